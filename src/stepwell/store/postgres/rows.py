"""The rows PostgreSQL statements return, typed: one decoding function per row kind.

Statements return positional tuples; each kind is read here, once, into a NamedTuple, so the
code that uses a row names its columns (`row.flags`) instead of counting them (`row[10]`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple


class EndedRow(NamedTuple):
    """settle_runs_complete, cancel_runs: a run that reached a terminal status without failing."""

    run_id: str
    parent_id: str | None
    parent_step: str | None
    child_index: int | None
    result: bytes | None  # settle_runs_complete: the output; cancel_runs: the error
    flags: int


class FailedRow(NamedTuple):
    """settle_runs_fail: a run that failed for good, with what its on_failure handler needs."""

    run_id: str
    parent_id: str | None
    parent_step: str | None
    child_index: int | None
    error: bytes
    function: str
    on_failure: str | None
    event_name: str
    event_data: Any
    failed_at: datetime
    flags: int


class StoppedRow(NamedTuple):
    """settle_runs_suspend, settle_runs_retry, release_runs: a run that stopped running (and did not end)."""

    run_id: str
    flags: int


class CandidateRow(NamedTuple):
    """claim_candidates: a picked run, its flow control and the state of the slots it needs (locked)."""

    run_id: str
    flags: int
    throttle: bytes | None
    slot_scopes: list[str]
    slot_keys: list[str]
    slot_limits: list[int]
    slot_uses: list[int]
    at: datetime


class ClaimRow(NamedTuple):
    """claim_runs, claim_picked: a claimed run, its event, and its memoized steps as parallel arrays
    (step_from_row's columns, in replay order; None when it has none)."""

    run_id: str
    function: str
    attempt: int
    max_attempts: int
    event_id: str | None
    input: bytes | None
    input_name: str | None
    created_at: datetime
    expires_at: datetime
    flags: int
    claimed_at: datetime
    event_name: str | None
    event_data: Any
    event_ts: datetime | None
    ready_at: datetime | None
    traceparent: str | None
    tracestate: str | None
    trace_link: bool | None
    step_columns: tuple[list[Any] | None, ...]


class ClaimRows(NamedTuple):
    """What a claim statement returned: whether its pick had runs that must first be admitted under flow
    control (claim_runs then claims nothing), and the runs it claimed, best first."""

    gated: bool
    claimed: list[ClaimRow]


class TimedOutRow(NamedTuple):
    """time_out_step: whether the lease held, the step as it stands (step_from_row's columns), and the
    invoked child the timeout cancelled, with its flow flags."""

    held: int
    step: tuple[Any, ...]
    child: str  # the invoked child (when child_flags is set)
    child_flags: int | None


def timed_out_row(row: Sequence[Any]) -> TimedOutRow:
    held, *step, child, child_flags = row
    return TimedOutRow(held, tuple(step), child, child_flags)


def ended_rows(rows: Iterable[Sequence[Any]]) -> list[EndedRow]:
    return [EndedRow._make(row) for row in rows]


def failed_rows(rows: Iterable[Sequence[Any]]) -> list[FailedRow]:
    return [FailedRow._make(row) for row in rows]


def stopped_rows(rows: Iterable[Sequence[Any]]) -> list[StoppedRow]:
    return [StoppedRow._make(row) for row in rows]


def claim_rows(rows: Iterable[Sequence[Any]]) -> ClaimRows:
    """claim_runs' rows (claim_picked's too): its first column says whether the pick needed admitting;
    a row without a run (claim_runs' left join) claimed nothing."""
    gated, claimed = False, []
    for found, *columns in rows:
        gated = gated or bool(found)
        if columns[0] is not None:
            claimed.append(ClaimRow._make([*columns[:18], tuple(columns[18:])]))
    return ClaimRows(gated, claimed)


def candidate_rows(rows: Iterable[Sequence[Any]]) -> list[CandidateRow]:
    return [CandidateRow._make(row) for row in rows]
