"""Events in: validate the whole batch, decide the runs, write event and runs in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepwell.clock import Clock
from stepwell.model.event import EventIn, validate_event
from stepwell.model.expressions import holds
from stepwell.model.ids import new_id
from stepwell.runtime.dispatch import runs_for_event
from stepwell.runtime.registry import Registry
from stepwell.store.base import AcceptedEvent, NewEvent, Store


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
    new_events = [
        NewEvent(
            id=event.id or new_id(now),
            name=event.name,
            data=event.data,
            ts=event.ts,
            runs=runs_for_event(registry.by_event, event.name, now),
        )
        for event in valid
    ]
    return store.append_events(new_events, conditions=_condition_holds, connection=connection)


def _condition_holds(condition: str, origin: Any, incoming: Any) -> bool:
    """A wait's CEL condition: `event` is the waiting run's event, `async` the incoming one."""
    return holds(condition, {"event": origin, "async": incoming})
