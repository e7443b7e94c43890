"""Model values to statement parameters (batches as parallel arrays), and rows back to model values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from stepwell.model.records import Disposition, ErrorInfo, Event, Run, RunStatus, Step, StepStatus
from stepwell.store.base import (
    ClaimedRun,
    Complete,
    Fail,
    Lease,
    NewChild,
    NewEvent,
    NewRun,
    Release,
    Retry,
    Settlement,
    StepWrite,
    Suspend,
    TraceContext,
)
from stepwell.store.postgres.rows import ClaimRow
from stepwell.store.postgres.statements import same
from stepwell.store.rows import error_bytes, error_or_none, json_or_none, step_from_row

_ENDED = (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.ERRORED)


def event_params(
    events: Sequence[NewEvent], at: datetime | None, *, if_no_waits: bool, generation: int | None = None
) -> dict[str, Any]:
    """The events, and their runs without flow control (the store admits the others itself)."""
    runs = [(event.id, run) for event in events for run in event.runs if run.flow is None]
    params = run_params([run for _, run in runs], at)
    params.update(
        ids=[e.id for e in events],
        names=[e.name for e in events],
        datas=[e.data for e in events],
        tss=[e.ts for e in events],
        dispositions=[(Disposition.STARTED if e.runs else Disposition.NO_MATCH).value for e in events],
        traceparents=[None if e.trace is None else e.trace.traceparent for e in events],
        tracestates=[None if e.trace is None else e.trace.tracestate or None for e in events],
        event_ids=[event_id for event_id, _ in runs],
        if_no_waits=if_no_waits,
        generation=generation,  # the registry generation to check in the statement (registry.py); None: none
    )
    return unnested(params)


def unnested(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters for a statement that zips its arrays with `unnest(a, b, ...)`: an array of nothing but
    NULLs is sent as NULL, which unnest pads back to NULLs for every row (a batch's events mostly have no
    timestamp, trace or input; psycopg dumps an all-NULL array in text format, element by element).
    Only for those statements: elsewhere a NULL array is not an array of NULLs."""
    return {
        name: None if type(value) is list and value and value.count(None) == len(value) else value
        for name, value in params.items()
    }


def run_params(runs: Sequence[NewRun], at: datetime | None) -> dict[str, Any]:
    return {
        "now": at,
        "run_ids": [r.id for r in runs],
        "functions": [r.function for r in runs],
        "inputs": [r.input for r in runs],
        "input_names": [r.input_name for r in runs],
        "parent_ids": [r.parent_id for r in runs],
        "replay_ofs": [r.replay_of for r in runs],
        "on_failures": [r.on_failure for r in runs],
        "max_attempts": [r.max_attempts for r in runs],
        "priorities": [r.priority for r in runs],
    }


def children_params(lease: Lease, step_id: str, children: Sequence[NewChild], at: datetime | None) -> dict[str, Any]:
    params = run_params([child.run for child in children], at)
    params.update(parent_id=lease.run_id, token=lease.token, step_id=step_id, child_indexes=[c.index for c in children])
    return params


def step_params(lease: Lease, step: StepWrite, at: datetime | None) -> dict[str, Any]:
    return {
        "run_id": lease.run_id,
        "token": lease.token,
        "id": step.step_id,
        "position": step.position,
        "kind": step.kind.value,
        "status": step.status.value,
        "output": step.output,
        "error": error_bytes(step.error),
        "wake_at": step.wake_at,
        "sleep_for": step.sleep_for,
        "started_at": step.started_at,
        "ended": step.status in _ENDED,
        "now": at,
    }


def written_step(step: StepWrite, row: tuple[Any, ...]) -> Step:
    """The Step a record_step row (attempts, started_at, ended_at, wake_at) describes."""
    attempts, started_at, ended_at, wake_at = row
    return Step(
        id=step.step_id,
        kind=step.kind,
        status=step.status,
        attempts=attempts,
        output=json_or_none(step.output),
        error=step.error,
        started_at=started_at,
        ended_at=ended_at,
        wake_at=wake_at,
        position=step.position,
    )


def lease_arrays(leases: Sequence[Lease]) -> dict[str, list[str]]:
    return {"run_ids": [lease.run_id for lease in leases], "tokens": [lease.token for lease in leases]}


def settlement_plan(settlements: Sequence[Settlement], at: datetime | None) -> list[tuple[str, dict[str, Any]]]:
    """Settlements grouped by kind: (statement name, parameters for the whole group)."""
    completes = [s for s in settlements if isinstance(s, Complete)]
    suspends = [s for s in settlements if isinstance(s, Suspend)]
    retries = [s for s in settlements if isinstance(s, Retry)]
    fails = [s for s in settlements if isinstance(s, Fail)]
    releases = [s for s in settlements if isinstance(s, Release)]
    plan: list[tuple[str, dict[str, Any]]] = []
    if completes:
        outputs = [s.output for s in completes]
        plan.append(
            ("settle_runs_complete", {**lease_arrays([s.lease for s in completes]), "now": at, "outputs": outputs})
        )
    if suspends:
        params: dict[str, Any] = {
            **lease_arrays([s.lease for s in suspends]),
            "now": at,
            "untils": [s.until for s in suspends],
            "waiting": [s.waiting for s in suspends],
        }
        plan.append(("settle_runs_suspend", params))
    if retries:
        params = {
            **lease_arrays([s.lease for s in retries]),
            "now": at,
            "errors": [error_bytes(s.error) for s in retries],
            "delays": [s.delay for s in retries],
        }
        plan.append(("settle_runs_retry", params))
    if fails:
        plan.append(("settle_runs_fail", fail_params(fails, at)))
    if releases:
        plan.append(("release_runs", {**lease_arrays([s.lease for s in releases]), "now": at}))
    return plan


def fail_params(fails: Sequence[Fail], at: datetime | None) -> dict[str, Any]:
    return {
        **lease_arrays([s.lease for s in fails]),
        "now": at,
        "errors": [error_bytes(s.error) for s in fails],
        "reasons": [s.reason.value for s in fails],
    }


def claimed_run(row: ClaimRow, token: str, batch: Sequence[Event] = ()) -> ClaimedRun:
    """A claimed run, its event, its steps; `batch`: a batch run's events."""
    if row.event_id is not None:
        event = Event(row.event_id, row.event_name or "", json_or_none(row.event_data), row.event_ts or row.created_at)
    else:
        event = Event(None, row.input_name or row.function, json_or_none(row.input), row.created_at)
    columns = row.step_columns
    steps = tuple(step_from_row(r, same) for r in zip(*columns, strict=True)) if columns[0] else ()
    return ClaimedRun(
        lease=Lease(row.run_id, token, row.expires_at),
        function=row.function,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        event=event,
        claimed_at=row.claimed_at,
        steps=steps,
        events=tuple(batch) or (event,),
        ready_at=row.ready_at,
        trace=None
        if row.traceparent is None
        else TraceContext(row.traceparent, row.tracestate or "", bool(row.trace_link)),
    )


def run_from_row(row: tuple[Any, ...], steps: tuple[Step, ...] = (), errors: tuple[ErrorInfo, ...] = ()) -> Run:
    (run_id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at, ended_at,
     available_at, output, error, replay_of, ordering_key) = row  # fmt: skip
    return Run(
        id=run_id,
        function=function,
        status=RunStatus(status),
        attempt=attempt,
        max_attempts=max_attempts,
        event_id=event_id,
        parent_id=parent_id,
        created_at=created_at,
        started_at=started_at,
        ended_at=ended_at,
        available_at=available_at,
        output=json_or_none(output),
        error=error_or_none(error),
        replay_of=replay_of,
        steps=steps,
        errors=errors,
        ordering_key=ordering_key,
    )
