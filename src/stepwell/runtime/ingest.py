"""Events in: validate the whole batch, route it from the registry, write events and runs in one transaction.

Every producer goes through here (`app.send`, `stepwell send`, a run's `send_event` step, and the HTTP
API): the runs are decided from the store's function registry (runtime/routing.py), never from the
caller's own functions, so that a process that imports no user code starts exactly the runs the
consumers define. The store checks, inside the events' transaction, that the registry is still at
the generation the runs were decided from; if a registration came in between, the batch is routed
again from the new registry (the event ids stay the same).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson

from stepwell.clock import Clock
from stepwell.errors import RegistryChanged
from stepwell.model.definition import FunctionDefinition
from stepwell.model.event import EventIn, ValidEvent, validate_event
from stepwell.model.expressions import holds
from stepwell.model.ids import new_ids
from stepwell.model.matching import event_document
from stepwell.runtime.crashpoints import crash_point
from stepwell.runtime.dispatch import new_run
from stepwell.runtime.routing import Router, RoutingTable
from stepwell.store.base import AcceptedEvent, NewEvent, NewRun, Store, transactional

ROUTING_ATTEMPTS = 5  # registrations racing one send this often in a row are not a thing; then the error surfaces


def ingest(
    events: Sequence[EventIn],
    *,
    router: Router,
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
    fresh = new_ids(now)  # one time prefix and one os.urandom call per chunk of ids, for the whole batch
    ids = [event.id or next(fresh) for event in valid]
    for attempt in range(ROUTING_ATTEMPTS):
        routes = _Routes(router.table())
        new_events = [
            NewEvent(event_id, event.name, event.data, event.ts, _runs(routes, event, event_id, now, fresh))
            for event, event_id in zip(valid, ids, strict=True)
        ]
        crash_point("ingest.before_write")
        try:
            accepted = _append(store, new_events, connection, routes.table.generation)
        except RegistryChanged:
            if attempt == ROUTING_ATTEMPTS - 1:
                raise
            router.invalidate()
            continue
        crash_point("ingest.after_commit")
        return accepted
    raise AssertionError("unreachable")


def _append(store: Store, events: list[NewEvent], connection: object | None, generation: int) -> list[AcceptedEvent]:
    """In our own transaction, or in the caller's (`connection`: PostgreSQL's transactional enqueue)."""
    if connection is not None:
        return transactional(store).append_events_in(
            connection, events, conditions=_condition_holds, registry_generation=generation
        )
    return store.append_events(events, conditions=_condition_holds, registry_generation=generation)


class _Routes:
    """The functions an event name triggers, and whether any of them reads the event's data (keys,
    conditions): looked up once per name in a batch, not once per event."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self._by_name: dict[str, tuple[tuple[FunctionDefinition, ...], bool]] = {}

    def __call__(self, name: str) -> tuple[tuple[FunctionDefinition, ...], bool]:
        found = self._by_name.get(name)
        if found is None:
            definitions = self.table.by_event.get(name, ())
            reads = any(d.flow is not None or d.condition is not None for d in definitions)
            found = self._by_name[name] = (definitions, reads)
        return found


def _runs(routes: _Routes, event: ValidEvent, event_id: str, now: datetime, ids: Iterator[str]) -> tuple[NewRun, ...]:
    """The event's runs; its data is decoded only when a triggered function has keys or a condition to evaluate."""
    definitions, reads_data = routes(event.name)
    if not reads_data:
        return tuple([new_run(definition, now, id=next(ids)) for definition in definitions])
    document = event_document(event_id, event.name, orjson.loads(event.data), event.ts or now)
    definitions = tuple(d for d in definitions if d.condition is None or holds(d.condition, {"event": document}))
    return tuple(new_run(definition, now, document=document, id=next(ids)) for definition in definitions)


def _condition_holds(condition: str, origin: Any, incoming: Any) -> bool:
    """A wait's CEL condition: `event` is the waiting run's event, `async` the incoming one."""
    return holds(condition, {"event": origin, "async": incoming})
