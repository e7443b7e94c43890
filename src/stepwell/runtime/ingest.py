"""Events in: validate the whole batch, decide the runs, write event and runs in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from stepwell.clock import Clock
from stepwell.model.event import EventIn, ValidEvent, validate_event
from stepwell.model.expressions import holds
from stepwell.model.ids import new_id
from stepwell.model.matching import event_document
from stepwell.runtime.dispatch import new_run
from stepwell.runtime.registry import Registry
from stepwell.store.base import AcceptedEvent, NewEvent, NewRun, Store, transactional


def ingest(
    events: Sequence[EventIn],
    *,
    registry: Registry,
    store: Store,
    clock: Clock,
    max_bytes: int,
    connection: object | None = None,
) -> list[AcceptedEvent]:
    """Nothing is written unless every event in the batch is valid; `connection`: the caller's transaction."""
    valid = [
        validate_event(event, max_bytes=max_bytes, index=i if len(events) > 1 else None)
        for i, event in enumerate(events)
    ]
    now = clock.now()
    new_events = []
    for event in valid:
        event_id = event.id or new_id(now)
        new_events.append(NewEvent(event_id, event.name, event.data, event.ts, _runs(registry, event, event_id, now)))
    if connection is not None:
        return transactional(store).append_events_in(connection, new_events, conditions=_condition_holds)
    return store.append_events(new_events, conditions=_condition_holds)


def _runs(registry: Registry, event: ValidEvent, event_id: str, now: datetime) -> tuple[NewRun, ...]:
    """The event's runs; its data is decoded only when a triggered function has keys to evaluate."""
    specs = registry.by_event.get(event.name, ())
    document = None
    if any(spec.flow is not None for spec in specs):
        document = event_document(event_id, event.name, orjson.loads(event.data), event.ts or now)
    return tuple(new_run(spec, now, document=document) for spec in specs)


def _condition_holds(condition: str, origin: Any, incoming: Any) -> bool:
    """A wait's CEL condition: `event` is the waiting run's event, `async` the incoming one."""
    return holds(condition, {"event": origin, "async": incoming})
