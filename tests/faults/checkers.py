"""Checkers: what went wrong, counted, from the history, the effect ledger and the store at quiescence.

Each checker is a pure function of its inputs, so a failing soak or campaign can be re-checked
from its saved files. `check` runs them all and returns a `Report`; `Report.problems()` is empty
when every promise held.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from stepwell.model.records import Run, RunStatus, StepStatus
from tests.faults.history import Op
from tests.faults.ledger import Execution


@dataclass
class Report:
    lost: list[str] = field(default_factory=list)  # acknowledged, yet no completed run
    unexpected: list[str] = field(default_factory=list)  # a run for an event refused or never sent
    duplicated: list[str] = field(default_factory=list)  # more than one run (or completion) for one event
    reexecuted_steps: list[str] = field(default_factory=list)  # a step's code began after its result was stored
    superseded: list[str] = field(default_factory=list)  # an attempt began user code after a later attempt did
    fifo: list[str] = field(default_factory=list)  # per ordering key: out of order, or overlapping
    concurrency: dict[str, int] = field(default_factory=dict)  # the most executing at once, per limit scope
    over_limit: list[str] = field(default_factory=list)
    stale_leases: int = 0  # runs 'running' without a live lease, once idle
    counts: dict[str, int] = field(default_factory=dict)

    def problems(self) -> list[str]:
        named = {
            "lost": self.lost,
            "unexpected": self.unexpected,
            "duplicated": self.duplicated,
            "completed-step re-executions": self.reexecuted_steps,
            "superseded attempts running user code": self.superseded,
            "FIFO violations": self.fifo,
            "over a concurrency limit": self.over_limit,
        }
        found = [f"{len(items)} {name}: {items[:5]}" for name, items in named.items() if items]
        if self.stale_leases:
            found.append(f"{self.stale_leases} runs left running without a live lease")
        return found

    def summary(self) -> str:
        return f"counts {self.counts}; max concurrency {self.concurrency}; problems: {self.problems() or 'none'}"


def lost_and_unexpected(ops: list[Op], runs_by_event: dict[str, list[Run]]) -> tuple[list[str], list[str]]:
    """`send` ops carry the client-chosen event id: ok ones must have completed, failed ones must not exist."""
    ok = {op.value for op in ops if op.f == "send" and op.type == "ok"}
    failed = {op.value for op in ops if op.f == "send" and op.type == "fail"}
    invoked = {op.value for op in ops if op.f == "send" and op.type == "invoke"}
    lost = sorted(e for e in ok if not any(run.status == RunStatus.COMPLETED for run in runs_by_event.get(e, [])))
    unexpected = sorted(e for e in runs_by_event if e in failed or e not in invoked)
    return lost, unexpected


def duplicated(runs_by_event: dict[str, list[Run]]) -> list[str]:
    return sorted(event for event, runs in runs_by_event.items() if len(runs) > 1)


def reexecuted_steps(executions: Iterable[Execution], runs: dict[str, Run]) -> list[str]:
    """An execution of a step by another attempt that began after the step's result was stored."""
    found = []
    for e in executions:
        run = runs.get(e.run)
        if e.phase != "start" or run is None:
            continue
        step = next((s for s in run.steps if s.id == e.step), None)
        if step is None or step.status != StepStatus.COMPLETED or step.ended_at is None:
            continue
        stored_by = step.output.get("attempt") if isinstance(step.output, dict) else None
        if e.attempt != stored_by and e.t > step.ended_at.timestamp():
            found.append(f"{e.run}/{e.step} attempt {e.attempt} (pid {e.pid}) after attempt {stored_by} stored it")
    return found


def superseded(executions: Iterable[Execution]) -> list[str]:
    """User code of attempt k that began after attempt k' > k of the same run had begun."""
    starts = [e for e in executions if e.phase == "start"]
    first_start: dict[tuple[str, int], float] = {}
    for e in starts:
        key = (e.run, e.attempt)
        first_start[key] = min(first_start.get(key, e.t), e.t)
    found = []
    for e in starts:
        later = [t for (run, attempt), t in first_start.items() if run == e.run and attempt > e.attempt]
        if later and e.t > min(later):
            found.append(f"{e.run}/{e.step} attempt {e.attempt} (pid {e.pid}) began after a later attempt")
    return found


def fifo(executions: Iterable[Execution]) -> list[str]:
    """Per ordering key: runs begin in the order their events were sent, and never overlap.

    Overlap is judged on each run's last attempt (a SIGSTOPped earlier attempt may still finish its
    step later: that is counted by `superseded`, not here)."""
    per_run: dict[str, list[Execution]] = defaultdict(list)
    for e in executions:
        if e.key is not None:
            per_run[e.run].append(e)
    per_key: dict[str, list[tuple[int, float, float, float, str]]] = defaultdict(list)
    for run, found in per_run.items():
        last = max(e.attempt for e in found)
        final = [e for e in found if e.attempt == last]
        first = min(e.t for e in found if e.phase == "start")
        begin = min(e.t for e in final if e.phase == "start")
        end = max((e.t for e in final if e.phase == "end"), default=float("inf"))
        seq = found[0].seq if found[0].seq is not None else -1
        per_key[str(found[0].key)].append((seq, first, begin, end, run))
    problems = []
    for key, runs in per_key.items():
        runs.sort()
        for before, after in itertools.pairwise(runs):
            if after[1] < before[1]:
                problems.append(f"key {key}: #{after[0]} began before #{before[0]}")
            if after[2] < before[3]:
                problems.append(f"key {key}: #{after[0]} began while #{before[0]} still ran")
    return problems


def max_concurrency(executions: Iterable[Execution], deaths: dict[int, float] | None = None) -> dict[str, int]:
    """The most attempts of one scope executing at once. An attempt counts until its `end`, or until
    the next attempt of its run began if that was sooner: the slot came back when its lease expired,
    and a killed or paused attempt's code ending later is counted by `superseded`, not here.
    `deaths`: when each SIGKILLed process died; its unfinished executions end there."""
    per_scope: dict[str, dict[tuple[str, int], list[float]]] = defaultdict(dict)
    for e in executions:
        if e.scope is None:
            continue
        died = (deaths or {}).get(e.pid, float("inf"))
        span = per_scope[e.scope].setdefault((e.run, e.attempt), [float("inf"), died])
        if e.phase == "start":
            span[0] = min(span[0], e.t)
        else:
            span[1] = min(span[1], e.t)
    peaks = {}
    for scope, spans in per_scope.items():
        for (run, attempt), span in spans.items():
            later = [s[0] for (r, a), s in spans.items() if r == run and a > attempt]
            span[1] = min([span[1], *later])
        moments = sorted([(s[0], 1) for s in spans.values()] + [(s[1], -1) for s in spans.values()])
        level = peak = 0
        for _, delta in moments:
            level += delta
            peak = max(peak, level)
        peaks[scope] = peak
    return peaks


def stale_leases(database_url: str) -> int:
    """Runs left 'running' whose lease has expired (by the store's clock), in the URL's database."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        now = int(time.time() * 1_000_000)  # the SQLite store's times: microseconds since the epoch
        with contextlib.closing(sqlite3.connect(path)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM runs WHERE status = 'running' AND (lease_token IS NULL"
                " OR lease_expires_at IS NULL OR lease_expires_at <= ?)",
                [now],
            ).fetchone()
        return int(row[0])
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        found = conn.execute(
            "SELECT count(*) FROM runs WHERE status = 'running'"
            " AND (lease_token IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= now())"
        ).fetchone()
    assert found is not None
    return int(str(found[0]))


def check(
    ops: list[Op],
    executions: list[Execution],
    runs: list[Run],
    *,
    limits: dict[str, int] | None = None,
    database_url: str | None = None,
    deaths: dict[int, float] | None = None,
) -> Report:
    """Every checker at once. `runs`: the runs to judge, with their steps (`get_run`)."""
    runs_by_event: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.event_id is not None:
            runs_by_event[run.event_id].append(run)
    report = Report()
    report.lost, report.unexpected = lost_and_unexpected(ops, runs_by_event)
    report.duplicated = duplicated(runs_by_event)
    report.reexecuted_steps = reexecuted_steps(executions, {run.id: run for run in runs})
    report.superseded = superseded(executions)
    report.fifo = fifo(executions)
    report.concurrency = max_concurrency(executions, deaths)
    report.over_limit = [
        f"{scope}: {peak} at once, limit {limits[scope]}"
        for scope, peak in report.concurrency.items()
        if limits and scope in limits and peak > limits[scope]
    ]
    if database_url is not None:
        report.stale_leases = stale_leases(database_url)
    report.counts = {
        "ops ok": sum(1 for op in ops if op.type == "ok"),
        "ops fail": sum(1 for op in ops if op.type == "fail"),
        "ops unknown": sum(1 for op in ops if op.type == "unknown"),
        "runs": len(runs),
        "executions": sum(1 for e in executions if e.phase == "start"),
    }
    return report


def summarize_runs(runs: list[Run]) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.status.value] += 1
    return dict(counts)
