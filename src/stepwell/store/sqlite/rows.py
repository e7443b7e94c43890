"""The rows SQLite statements return, typed: one decoding function per row kind (as postgres/rows.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from stepwell.store.plan.lines import Line


class ClaimRow(NamedTuple):
    """claim_runs: a run just leased, with what its attempt needs to start."""

    run_id: str
    function: str
    attempt: int
    max_attempts: int
    event_id: str | None
    input: bytes | None
    input_name: str | None
    created_at: int
    flags: int
    available_at: int
    traceparent: str | None  # the run's own context (a child run's, a replay's link); else its event's
    tracestate: str | None
    trace_link: int


class CandidateRow(NamedTuple):
    """claim_candidates: a ready run picked in priority order."""

    run_id: str
    flags: int
    throttle: bytes | None
    never_started: int


def claim_rows(rows: Iterable[Sequence[Any]]) -> list[ClaimRow]:
    return [ClaimRow._make(row) for row in rows]


def candidate_rows(rows: Iterable[Sequence[Any]]) -> list[CandidateRow]:
    return [CandidateRow._make(row) for row in rows]


class FailedRow(NamedTuple):
    """settle_runs_fail, fail_overdue_runs_fail: a run that failed for good, with what its dead letter
    and handler need."""

    function: str
    attempt: int
    on_failure: str | None
    event_id: str | None
    input: bytes | None
    input_name: str | None
    flags: int


def flags_of(row: Sequence[Any] | None) -> int | None:
    """A statement that changed one run and returns its `flow` flags (last column); None: no run changed."""
    return None if row is None else int(row[-1])


def failed_row(row: Sequence[Any] | None) -> FailedRow | None:
    return None if row is None else FailedRow._make(row)


def line_of(row: Sequence[Any]) -> Line:
    """key_state: an ordering key's head and whether it is paused or parked (0/1 in SQLite)."""
    head, paused, parked = row
    return Line(head, bool(paused), bool(parked))
