"""The Store, observed: one wrapper that counts events and runs, times the queue, carries the trace
context through the store and writes ctx.log lines with the run's writes.

Every other verb passes straight through (`__getattr__`), so a verb added to the Store protocol
works unobserved until it is worth observing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import orjson

from stepwell.model.records import Step, StepKind, StepStatus
from stepwell.observe import metrics as metrics_module
from stepwell.observe import runlog, scope, tracing
from stepwell.observe.settings import SETTINGS
from stepwell.store.base import (
    AcceptedEvent,
    ClaimedRun,
    Lease,
    NewChild,
    NewEvent,
    NewRun,
    SettledAndClaimed,
    Settlement,
    StepWrite,
    Store,
    TraceContext,
    transactional,
)


def _destination(events: Sequence[NewEvent]) -> str:
    names = {event.name for event in events}
    return next(iter(names)) if len(names) == 1 else "batch"


def _operation(runs: Sequence[NewRun]) -> str:
    return "replay" if runs and all(run.replay_of for run in runs) else "enqueue"


def _count_runs(runs: Sequence[NewRun], owners: Sequence[str | None]) -> None:
    if SETTINGS.metrics:
        created = metrics_module.current()
        for run, owner in zip(runs, owners, strict=True):
            if owner == run.id:
                created.runs_created.child(created.functions(run.function)).inc()


def _traced(events: Sequence[NewEvent], context: TraceContext | None) -> Sequence[NewEvent]:
    """The events with the producer's context, stored in the same statement (no write of its own)."""
    if context is None:
        return events
    return [replace(event, trace=context) for event in events]


def observed_store(store: Store) -> Store:
    """`store`, observed (once: an observed store is returned as it is)."""
    if isinstance(store, ObservedStore):
        return cast(Store, store)
    return cast(Store, ObservedStore(store))


class ObservedStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if callable(value):
            setattr(self, name, value)  # later calls skip __getattr__
        return value

    # producing

    def append_events(self, events: Sequence[NewEvent], **kwargs: Any) -> list[AcceptedEvent]:
        with tracing.producer_span("send", _destination(events), len(events)) as context:
            accepted = self.inner.append_events(_traced(events, context), **kwargs)
        if SETTINGS.metrics:
            _count_events(events, accepted)
        return accepted

    def append_events_in(self, connection: object, events: Sequence[NewEvent], **kwargs: Any) -> list[AcceptedEvent]:
        """In the caller's transaction (PostgreSQL): observed the same, the trace context written with the events."""
        with tracing.producer_span("send", _destination(events), len(events)) as context:
            inner = transactional(self.inner)
            accepted: list[AcceptedEvent] = inner.append_events_in(connection, _traced(events, context), **kwargs)
        if SETTINGS.metrics:
            _count_events(events, accepted)
        return accepted

    def create_runs(self, runs: Sequence[NewRun], **kwargs: Any) -> list[str | None]:
        with tracing.producer_span(_operation(runs), runs[0].function if runs else "", len(runs)) as context:
            owners = self.inner.create_runs(runs, **kwargs)
            if context is not None:
                self._trace_new_runs(runs, owners, context)
        _count_runs(runs, owners)
        return owners

    def create_runs_in(self, connection: object, runs: Sequence[NewRun], **kwargs: Any) -> list[str | None]:
        """In the caller's transaction (PostgreSQL): like create_runs, without storing trace context."""
        with tracing.producer_span(_operation(runs), runs[0].function if runs else "", len(runs)):
            owners: list[str | None] = transactional(self.inner).create_runs_in(connection, runs, **kwargs)
        _count_runs(runs, owners)
        return owners

    def _trace_new_runs(self, runs: Sequence[NewRun], owners: Sequence[str | None], context: TraceContext) -> None:
        """A replay carries its original's context as a link; any other new run, the enqueue span's."""
        fresh = [run for run, owner in zip(runs, owners, strict=True) if owner == run.id]
        plain = [run.id for run in fresh if run.replay_of is None]
        if plain:
            self.inner.set_trace_context(context, run_ids=plain)
        for run in fresh:
            if run.replay_of is not None:
                for original in self.inner.run_telemetry([run.replay_of]):
                    if original.trace is None:
                        continue
                    linked = TraceContext(original.trace.traceparent, original.trace.tracestate, link=True)
                    self.inner.set_trace_context(linked, run_ids=[run.id])

    # the queue

    def claim_runs(self, **kwargs: Any) -> list[ClaimedRun]:
        """The claim carries each run's ready time and trace context (no query of ours): counted here,
        the context is taken by the attempt's span."""
        claimed = self.inner.claim_runs(**kwargs)
        if claimed and SETTINGS.metrics:
            _count_claimed(claimed)
        return claimed

    def settle_runs(self, settlements: Sequence[Settlement], **kwargs: Any) -> list[str]:
        self._write_lines(settlements)
        return self.inner.settle_runs(settlements, **kwargs)

    def settle_and_claim(self, settlements: Sequence[Settlement], **kwargs: Any) -> SettledAndClaimed:
        """Observed as settle_runs and claim_runs are: the settled runs' lines first, the claimed runs counted."""
        self._write_lines(settlements)
        result = self.inner.settle_and_claim(settlements, **kwargs)
        if result.claimed and SETTINGS.metrics:
            _count_claimed(result.claimed)
        return result

    def _write_lines(self, settlements: Sequence[Settlement]) -> None:
        lines = runlog.take_pending([s.lease.run_id for s in settlements])
        if lines:
            self.inner.append_run_logs(lines, max_lines=SETTINGS.log_lines_per_run)

    def rescue_expired_leases(self, **kwargs: Any) -> int:
        rescued = self.inner.rescue_expired_leases(**kwargs)
        if rescued and SETTINGS.metrics:
            metrics_module.current().runs_rescued.inc(rescued)
        return rescued

    # writes under a lease

    def record_step(self, lease: Lease, step: StepWrite, **kwargs: Any) -> Step:
        self._flush_lines(lease)
        written = self.inner.record_step(lease, step, **kwargs)
        if step.kind == StepKind.FAN_OUT and step.status == StepStatus.COMPLETED and SETTINGS.metrics:
            _count_fan_out(step.output)
        return written

    def start_child(self, lease: Lease, step: StepWrite, child: NewChild, **kwargs: Any) -> Step:
        self._flush_lines(lease)
        written = self.inner.start_child(lease, step, child, **kwargs)
        self._children_created([child])
        return written

    def create_children(self, lease: Lease, step_id: str, children: Sequence[NewChild], **kwargs: Any) -> int:
        created = self.inner.create_children(lease, step_id, children, **kwargs)
        self._children_created(children, fan_out=True)
        return created

    def _children_created(self, children: Sequence[NewChild], *, fan_out: bool = False) -> None:
        """Child runs carry their parent's context (the span current in the parent's attempt)."""
        context = tracing.current_carrier() if tracing.tracer() is not None else None
        if context is not None:
            self.inner.set_trace_context(context, run_ids=[child.run.id for child in children])
        if SETTINGS.metrics and children:
            found = metrics_module.current()
            function = found.functions(children[0].run.function)
            found.runs_created.child(function).inc(len(children))
            if fan_out:
                attempt = scope.ATTEMPT.get()  # counted under the parent's function, as their outcomes are
                parent = found.functions(attempt.function) if attempt is not None else function
                found.fan_out_children.child(parent, "created").inc(len(children))

    def _flush_lines(self, lease: Lease) -> None:
        """Lines logged so far in this attempt are written before the step, so a step that is recorded
        has its lines stored with it (not in the same transaction: see observe/runlog.py)."""
        attempt = scope.ATTEMPT.get()
        if attempt is None or attempt.run_id != lease.run_id or not attempt.lines:
            return
        lines = attempt.take_lines()
        if lines:
            self.inner.append_run_logs(lines, max_lines=SETTINGS.log_lines_per_run)


def _count_claimed(claimed: list[ClaimedRun]) -> None:
    """Attempts started (one increment per function and batch) and their schedule-to-start latency."""
    current = metrics_module.current()
    started: dict[str, int] = {}
    for run in claimed:
        function = run.function
        started[function] = started.get(function, 0) + 1
        if run.ready_at is not None:
            waited = (run.claimed_at - run.ready_at).total_seconds()
            current.function(function).schedule_to_start.observe(waited if waited > 0.0 else 0.0)
    for function, count in started.items():
        current.function(function).started.inc(count)


def _count_events(events: Sequence[NewEvent], accepted: Sequence[AcceptedEvent]) -> None:
    """Counted in dicts first, then one increment per label set: a bulk send of 1,000 events to one
    function takes two counter locks, not 2,000."""
    by_id: dict[str, NewEvent] = {}
    for event in events:
        by_id.setdefault(event.id, event)  # a repeat within the batch: the first one's runs were stored
    received: dict[tuple[str, str], int] = {}
    created: dict[str, int] = {}
    for result in accepted:
        event = by_id[result.id]
        disposition = "deduplicated" if result.duplicate else ("started" if result.run_ids else "no_run")
        received[event.name, disposition] = received.get((event.name, disposition), 0) + 1
        if result.duplicate or not result.run_ids:
            continue
        started = result.run_ids
        for run in event.runs:
            if run.id in started:
                created[run.function] = created.get(run.function, 0) + 1
    found = metrics_module.current()
    for (name, disposition), count in received.items():
        found.events_received.child(found.event_names(name), disposition).inc(count)
    for function, count in created.items():
        found.runs_created.child(found.functions(function)).inc(count)


def _count_fan_out(output: bytes | None) -> None:
    """A finished fan-out's summary (counts by state), under the parent's function."""
    attempt = scope.ATTEMPT.get()
    if attempt is None or not output:
        return
    summary = orjson.loads(output)
    if not isinstance(summary, dict):
        return
    found = metrics_module.current()
    function = found.functions(attempt.function)
    for state in ("completed", "failed", "cancelled"):
        count = summary.get(state)
        if isinstance(count, int) and count:
            found.fan_out_children.child(function, state).inc(count)
