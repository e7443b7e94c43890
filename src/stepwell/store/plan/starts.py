"""Whether picked runs may start now, decided in memory: concurrency slots and throttle turns.

The claim picks ready runs in priority order; those with flow control go through here, one
after another, each seeing the slots and gate turns the ones before it took. A run takes a slot
of every limit it is under, or none: when one is full it is held back, waiting on that limit's
scope. A run whose throttle has no turn yet gives its slots back and is put off until its turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from stepwell.store.base import Gate
from stepwell.store.flowrules import gcra

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A picked run: the concurrency limits it must get a slot of, (scope, key, limit), and its throttle."""

    run_id: str
    slots: tuple[tuple[str, str, int], ...] = ()
    throttle: Gate | None = None


@dataclass
class Starts:
    """The change-set: which runs start, which are held or put off, and the slots and gates as they end."""

    admitted: list[str] = field(default_factory=list)
    held: list[tuple[str, str]] = field(default_factory=list)  # (run, the scope of the full slot)
    throttled: list[tuple[str, datetime]] = field(default_factory=list)  # (run, its next turn)
    slots: dict[Key, int] = field(default_factory=dict)  # the slots whose use changed: in use now
    tats: dict[Key, datetime] = field(default_factory=dict)  # the gates that moved: their new state


def plan_starts(
    candidates: Sequence[Candidate], in_use: dict[Key, int], tats: dict[Key, datetime], at: datetime
) -> Starts:
    """Decide over `in_use` (slots read, a missing one is free) and `tats` (gates read, a missing one
    starts at `at`), candidate by candidate in the order given."""
    using = {(scope, key): in_use.get((scope, key), 0) for c in candidates for scope, key, _ in c.slots}
    turns = {(c.throttle.scope, c.throttle.key): tats.get((c.throttle.scope, c.throttle.key), at)
             for c in candidates if c.throttle is not None}  # fmt: skip
    before_using, before_turns = dict(using), dict(turns)
    starts = Starts()
    for c in candidates:
        full = next((scope for scope, key, limit in c.slots if using[(scope, key)] >= limit), None)
        if full is not None:
            starts.held.append((c.run_id, full))
            continue
        if c.throttle is not None:
            gate_key = (c.throttle.scope, c.throttle.key)
            allowed, retry_at, tat = gcra(c.throttle, turns[gate_key], at)
            if not allowed:
                starts.throttled.append((c.run_id, retry_at))
                continue
            turns[gate_key] = tat
        for scope, key, _ in c.slots:
            using[(scope, key)] += 1
        starts.admitted.append(c.run_id)
    starts.slots = {k: n for k, n in using.items() if n != before_using[k]}
    starts.tats = {k: t for k, t in turns.items() if t != before_turns[k]}
    return starts


@dataclass
class SlotRelease:
    """The change-set of a run giving its slots back: one use less of each, and the waiter of each
    freed slot (the first held back on it) released from waiting on that scope, to be claimed again."""

    given: list[Key] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)  # (waiting run, scope)


def plan_release(slots: Sequence[tuple[str, str]], first_waiters: dict[Key, str | None]) -> SlotRelease:
    """A run's slots, (scope, key), go back; `first_waiters` holds, per slot, the run waiting longest."""
    release = SlotRelease(given=list(slots))
    for scope, key in slots:
        waiter = first_waiters.get((scope, key))
        if waiter is not None:
            release.released.append((waiter, scope))
    return release
