"""Ordering keys, decided in memory: who holds a key (its head) and what moves it on.

Only a key's head is claimable; the other runs of the key wait in line (hold 'ordering', or
'paused' while the key is paused) in the order they came. When the head ends, the key goes to
the next run in line, or parks on the head when it failed under on_dead_letter='park'. A key
with nobody in line has no row, unless it is paused (the pause outlives an empty line).

Each function takes the key as read (None: no row) and returns a `LineChange` for the backend
to write. SQLite runs every one of them. PostgreSQL runs them where it decides in Python
(redrive, pause, resume); on its settle path the same hand-off is one set-based statement
(`move_keys` in postgres/flow.sql) that goes to the server with the commit, so that settling
costs no extra round trip; the conformance suite holds the two to the same behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass
class Line:
    """An ordering key: the run holding it (its head), and whether it is paused or parked."""

    head: str | None = None
    paused: bool = False
    parked: bool = False
    changed: bool = False


@dataclass(frozen=True, slots=True)
class LineChange:
    """What to write: the key's row (`line`; None: leave it; `drop`: delete it), the holds of the runs
    that move, the dead letter's key policy, and a conditional pause or release of a queued head."""

    line: Line | None = None
    drop: bool = False
    holds: tuple[tuple[str, str | None], ...] = ()
    dead_letter_policy: Literal["parked", "skipped"] | None = None
    head_hold: Literal["pause", "resume"] | None = None

    @property
    def head(self) -> str | None:
        return None if self.line is None else self.line.head


def hold_for(line: Line) -> str | None:
    """The hold of a run that takes `line`'s key: claimable, unless the key is paused."""
    return "paused" if line.paused else None


def join(line: Line, run_id: str) -> str | None:
    """A new run of the key: it becomes the head if nobody holds the key, else it waits its turn.
    Updates `line` in place (admission decides many runs over one snapshot); returns the run's hold."""
    if line.head is None:
        line.head, line.changed = run_id, True
        return hold_for(line)
    return "paused" if line.paused else "ordering"


def promote(line: Line, next_run: str | None) -> LineChange:
    """Give the key to `next_run`, the first in line (None: nobody waits)."""
    if next_run is None:
        return LineChange(Line(None, True, False)) if line.paused else LineChange(drop=True)
    return LineChange(Line(next_run, line.paused, False), holds=((next_run, hold_for(line)),))


def is_head(line: Line | None, run_id: str) -> bool:
    """Only the key's head moves the key when it ends."""
    return line is not None and line.head == run_id


def head_ended(line: Line, run_id: str, *, failed: bool, park: bool, next_run: str | None) -> LineChange:
    """The head `run_id` ended (check `is_head` first). A failure parks the key on it (park) or
    skips past it; either way its dead letter records the policy."""
    if not failed:
        return promote(line, next_run)
    if park:
        return LineChange(Line(run_id, line.paused, True), dead_letter_policy="parked")
    return replace(promote(line, next_run), dead_letter_policy="skipped")


def rejoin(line: Line | None, run_id: str) -> LineChange:
    """A redriven run: it takes the key back if the key is free or parked on it; otherwise it
    waits in line, where its original place puts it first."""
    if line is None or line.head in (None, run_id):
        taken = Line(run_id, bool(line and line.paused), False)
        return LineChange(taken, holds=((run_id, hold_for(taken)),))
    return LineChange(holds=((run_id, "ordering"),))


def set_paused(line: Line | None, paused: bool) -> LineChange:
    """Pausing holds the key's queued head (a run already in progress carries on); resuming
    releases it. A key without a head has nobody in line: resumed, its row goes."""
    current = line or Line()
    if current.head is None and not paused:
        return LineChange(drop=True)
    return LineChange(
        Line(current.head, paused, current.parked),
        head_hold=None if current.head is None else ("pause" if paused else "resume"),
    )


def skip_parked(line: Line | None, next_run: str | None) -> LineChange | None:
    """Move a parked key past its dead letter, to the next run in line; None when it is not parked."""
    if line is None or not line.parked:
        return None
    return promote(line, next_run)
