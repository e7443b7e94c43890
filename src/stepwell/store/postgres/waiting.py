"""The PostgreSQL side of waiting: event waits, invoked children, fan-outs.

Functions over a connection the store has opened (inside its transaction where one is needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from stepwell.model.records import ChildResult, ErrorInfo, FanOutCounts, RunStatus, StepStatus
from stepwell.store.base import ConditionCheck, NewEvent
from stepwell.store.plan import waits
from stepwell.store.postgres.rows import EndedRow, FailedRow
from stepwell.store.postgres.statements import Connection, one, run
from stepwell.store.rows import error_bytes, error_or_none, json_or_none

# A waiting step settled from outside its run: (run_id, step_id, status, output, error).
Resolution = tuple[str, str, StepStatus, bytes | None, ErrorInfo | None]
# A run that reached a terminal status: (run_id, parent_id, parent_step, child_index, status, output, error).
Finished = tuple[str, str | None, str | None, int | None, RunStatus, bytes | None, bytes | None]


def resume_waits(
    conn: Connection,
    events: Sequence[NewEvent],
    wait_names: Sequence[str],
    wait_paths: Sequence[str | None],
    conditions: ConditionCheck | None,
    at: datetime | None,
) -> tuple[set[str], dict[str, str]]:
    """Resolve the waits that these newly stored events match; returns the ids of events that resumed
    one, and the runs whose cancel_on they match (run id -> the first such event), for the store to cancel.

    Candidates come from the waits index (event name, path, canonical value); a wait's CEL
    condition is checked by `conditions`. Within a batch, the first matching event wins a wait.
    """
    paths_by_name: dict[str, list[str | None]] = {}
    for name, path in zip(wait_names, wait_paths, strict=True):
        paths_by_name.setdefault(name, []).append(path)
    matches = waits.WaitMatches(conditions)
    for event in events:
        paths = paths_by_name.get(event.name)
        if not paths:
            continue
        new = waits.offered(event)
        for path, value in waits.lookups(new, paths):
            params = {"name": event.name, "path": path, "value": value}
            matches.offer(new, run(conn, "waits_matching", params).fetchall())
    chosen = matches.resolve
    resolved = resolve_steps(
        conn, [(run_id, step_id, StepStatus.COMPLETED, out, None) for (run_id, step_id), (_, out) in chosen.items()], at
    )
    return {event_id for key, (event_id, _) in chosen.items() if key in resolved}, matches.cancel


def resolve_steps(conn: Connection, resolutions: Sequence[Resolution], at: datetime | None) -> set[tuple[str, str]]:
    """Settle waiting steps and wake their runs, in one statement; returns the (run, step) pairs resolved."""
    if not resolutions:
        return set()
    params = {
        "run_ids": [run_id for run_id, _, _, _, _ in resolutions],
        "step_ids": [step_id for _, step_id, _, _, _ in resolutions],
        "statuses": [status.value for _, _, status, _, _ in resolutions],
        "outputs": [output for _, _, _, output, _ in resolutions],
        "errors": [error_bytes(error) for _, _, _, _, error in resolutions],
        "now": at,
    }
    run_ids, step_ids, _ = one(conn, "resolve_steps", params)
    return set(zip(run_ids, step_ids, strict=True))


def children_finished(conn: Connection, finished: Sequence[Finished], at: datetime | None) -> list[tuple[str, str]]:
    """In the transaction that ended these runs: settle the invoke steps waiting on them.

    Returns the fan-outs (parent, step) they belong to, to check with `finish_fan_outs` after commit.
    """
    invokes: list[Resolution] = []
    fan_outs: list[tuple[str, str]] = []
    for run_id, parent_id, parent_step, child_index, status, output, error in finished:
        if parent_id is None or parent_step is None:
            continue
        if child_index is not None:
            fan_outs.append((parent_id, parent_step))
        elif status == RunStatus.COMPLETED:
            invokes.append((parent_id, parent_step, StepStatus.COMPLETED, output, None))
        else:
            failure = error_or_none(error) or ErrorInfo("Cancelled", f"child run {run_id} was cancelled")
            invokes.append((parent_id, parent_step, StepStatus.FAILED, None, failure))
    resolve_steps(conn, invokes, at)
    return sorted(set(fan_outs))


def finish_fan_outs(conn: Connection, fan_outs: Sequence[tuple[str, str]], at: datetime | None) -> int:
    """Mark done (once) the sealed fan-outs whose children have all finished; wake their parents.

    Call after the commit that finished the children: see `finish_fan_outs` in queries.sql.
    """
    if not fan_outs:
        return 0
    params = {"parent_ids": [p for p, _ in fan_outs], "step_ids": [s for _, s in fan_outs], "now": at}
    done, _ = one(conn, "finish_fan_outs", params)
    return int(done)


def fan_out_counts(conn: Connection, parent_id: str, step_id: str) -> FanOutCounts:
    total, done, statuses, counts = one(conn, "fan_out_counts", {"parent_id": parent_id, "step_id": step_id})
    by_status: dict[str, int] = dict(zip(statuses or (), counts or (), strict=True))
    return FanOutCounts(
        total=total,
        queued=sum(by_status.get(s, 0) for s in ("queued", "sleeping", "waiting")),
        running=by_status.get("running", 0),
        completed=by_status.get("completed", 0),
        failed=by_status.get("failed", 0),
        cancelled=by_status.get("cancelled", 0),
        done=bool(done),
    )


def fan_out_page(conn: Connection, parent_id: str, step_id: str, after: int, limit: int) -> list[ChildResult]:
    params = {"parent_id": parent_id, "step_id": step_id, "after": after, "limit": limit}
    return [
        ChildResult(index, run_id, RunStatus(status), json_or_none(output), error_or_none(error))
        for index, run_id, status, output, error in run(conn, "fan_out_results", params).fetchall()
    ]


def finished_rows(rows: Sequence[EndedRow | FailedRow], status: RunStatus) -> list[Finished]:
    """`Finished` entries of runs that ended: a completed run's output, a failed or cancelled run's error."""
    finished: list[Finished] = []
    for row in rows:
        output: bytes | None
        error: bytes | None
        if isinstance(row, FailedRow):
            output, error = None, row.error
        else:
            output, error = (row.result, None) if status == RunStatus.COMPLETED else (None, row.result)
        finished.append((row.run_id, row.parent_id, row.parent_step, row.child_index, status, output, error))
    return finished
