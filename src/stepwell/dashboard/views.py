"""Pure helpers that shape App values for the templates: the waterfall, the lazy JSON tree, durations.

No I/O here: each takes values and the current time and returns plain values, so the decisions
(what to collapse, how much of a 4 MiB document to show) are tested without a server or a browser.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson

from stepwell.model.records import Run, Step, StepKind

ACTIVE_KINDS = frozenset({StepKind.RUN, StepKind.INVOKE, StepKind.SEND})
JSON_NODES = 300  # nodes of a JSON value rendered as a tree; the rest is behind "show more"
JSON_STRING = 400  # characters of one string shown in the tree
RAW_CHUNK = 64 * 1024  # characters of pretty JSON sent per "show more"
WIDTH = 1000.0  # the waterfall's SVG user units


def segment(value: object) -> str:
    """`value` as one URL path segment, every reserved character percent-encoded (`/`, `?`, `#`, `%`,
    space, non-ASCII): an event id is any printable string, and HTML escaping alone leaves a link
    to `a/b?c` pointing at another path with a query. The templates' `segment` filter."""
    return quote(str(value), safe="")


def duration(seconds: float | None) -> str:
    """'850 ms', '12.4 s', '3 m 05 s', '2 h 10 m', '4 d 3 h': short, and readable at a glance."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} m"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def ago(moment: datetime | None, now: datetime) -> str:
    return "—" if moment is None else duration(max((now - moment).total_seconds(), 0.0)) + " ago"


# the waterfall


@dataclass(frozen=True, slots=True)
class Bar:
    step: Step
    x: float  # SVG user units out of WIDTH
    width: float
    idle: bool  # a sleep or a wait: drawn as a gap, not as work
    took: str


@dataclass(frozen=True, slots=True)
class Fold:
    """A long stretch without work, drawn at a fixed width with its real length written on it."""

    x: float
    width: float
    label: str


@dataclass(frozen=True, slots=True)
class Waterfall:
    bars: list[Bar]
    folds: list[Fold]
    total: str


def waterfall(run: Run, now: datetime) -> Waterfall:
    """Steps on one time axis from the run's creation; idle stretches longer than a fifth of the
    busy time (at least 2 s) are folded to that width, so a 3-day sleep between two 40 ms steps
    leaves both steps visible."""
    origin = run.created_at
    spans = [(step, *_span(step, origin, now)) for step in sorted(run.steps, key=lambda s: s.position)]
    end = max([finish for _, _, finish in spans] + [_seconds((run.ended_at or now) - origin)])
    busy = _merge([(start, finish) for step, start, finish in spans if step.kind in ACTIVE_KINDS])
    threshold = max(sum(b - a for a, b in busy) * 0.2, 2.0)
    axis, folds = _axis(busy, end, threshold)
    scale = WIDTH / max(axis(end), 1e-9)
    bars = [
        Bar(step, axis(start) * scale, max((axis(finish) - axis(start)) * scale, 2.0),
            step.kind not in ACTIVE_KINDS, duration(finish - start))
        for step, start, finish in spans
    ]  # fmt: skip
    return Waterfall(bars, [Fold(a * scale, (b - a) * scale, label) for a, b, label in folds], duration(end))


def _span(step: Step, origin: datetime, now: datetime) -> tuple[float, float]:
    start = _seconds((step.started_at or origin) - origin)
    finish_at = step.ended_at or (step.wake_at if step.wake_at and step.wake_at < now else None) or now
    return start, max(start, _seconds(finish_at - origin))


def _seconds(delta: timedelta) -> float:
    return max(delta.total_seconds(), 0.0)


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, finish in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
        else:
            merged.append((start, finish))
    return merged


def _axis(busy: list[tuple[float, float]], end: float, threshold: float) -> tuple[Any, list[tuple[float, float, str]]]:
    """A piecewise-linear map from seconds to axis units that folds each long idle stretch."""
    idle: list[tuple[float, float]] = []
    cursor = 0.0
    for start, finish in busy:
        if start - cursor > threshold:
            idle.append((cursor, start))
        cursor = max(cursor, finish)
    if end - cursor > threshold:
        idle.append((cursor, end))

    def axis(t: float) -> float:
        removed = 0.0
        for start, finish in idle:
            if t <= start:
                break
            removed += max(min(t, finish) - start - threshold, 0.0)
        return t - removed

    folds = [(axis(start), axis(start) + threshold, f"⋯ {duration(finish - start)} idle") for start, finish in idle]
    return axis, folds


# the JSON viewer


@dataclass(slots=True)
class Node:
    kind: str  # 'object', 'array' or 'scalar'
    label: str  # the key or index within its parent ('' at the root)
    text: str = ""  # a scalar, as JSON, cut to JSON_STRING characters
    cut: bool = False  # the scalar was cut
    size: int = 0  # entries of an object or an array
    children: list[Node] = field(default_factory=list)
    hidden: int = 0  # entries not rendered (over the node budget)


def json_tree(value: Any, budget: int = JSON_NODES) -> tuple[Node, bool]:
    """The first `budget` nodes of `value`, breadth-limited; True when anything was left out, in
    which case the page offers the raw text in chunks instead of building a DOM of millions of nodes."""
    left = [budget]
    root = _node("", value, left)
    return root, left[0] <= 0


def _node(label: str, value: Any, left: list[int]) -> Node:
    left[0] -= 1
    if isinstance(value, dict):
        node = Node("object", label, size=len(value))
        items: Iterable[tuple[str, Any]] = value.items()
    elif isinstance(value, list):
        node = Node("array", label, size=len(value))
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        text = orjson.dumps(value, default=str).decode()
        return Node("scalar", label, text[:JSON_STRING], cut=len(text) > JSON_STRING)
    for shown, (key, item) in enumerate(items):
        if left[0] <= 0:
            node.hidden = node.size - shown
            break
        node.children.append(_node(key, item, left))
    return node


def raw_chunk(value: Any, offset: int, size: int = RAW_CHUNK) -> tuple[str, int | None]:
    """`size` characters of the pretty JSON from `offset`, and the next offset (None at the end)."""
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
    chunk = text[offset : offset + size]
    following = offset + size
    return chunk, (following if following < len(text) else None)


# throughput from a bounded sample


@dataclass(frozen=True, slots=True)
class Throughput:
    """Runs ended per function over `window` seconds. `sampled`: the window was shortened to the
    newest endings the sample holds, so the counts are an estimate of the rate, not totals."""

    counts: dict[str, tuple[int, int]]  # function -> (completed, failed)
    window: float
    sampled: bool

    def per_minute(self, function: str) -> float:
        completed, failed = self.counts.get(function, (0, 0))
        return (completed + failed) / max(self.window, 1.0) * 60

    def failure_rate(self, function: str) -> float | None:
        completed, failed = self.counts.get(function, (0, 0))
        return failed / (completed + failed) if completed + failed else None


def throughput(
    completed: list[tuple[str, datetime]],
    failed: list[tuple[str, datetime]],
    since: datetime,
    now: datetime,
    limit: int,
) -> Throughput:
    """Counts over [since, now], or, when a sample filled up (`limit` rows), over the stretch both
    samples cover in full: from the newer of their oldest rows."""
    start = since
    for sample in (completed, failed):
        if len(sample) >= limit:
            start = max(start, sample[-1][1])
    counts: dict[str, list[int]] = {}
    for index, sample in enumerate((completed, failed)):
        for function, ended_at in sample:
            if ended_at >= start:
                counts.setdefault(function, [0, 0])[index] += 1
    window = max((now - start).total_seconds(), 1e-3)
    return Throughput({name: (pair[0], pair[1]) for name, pair in counts.items()}, window, start > since)
