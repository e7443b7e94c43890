"""Routing from the store's function registry: which functions an event starts, wherever it is sent from.

A `Router` keeps the registry as last read (a `RoutingTable` at one generation) and decodes each
stored definition once per version hash, which compiles its CEL programs once (the compiled
programs are cached by source in model/expressions.py). Ingest passes the table's generation to
`Store.append_events`, which checks it inside the event's transaction; a registration that came in
between makes the store refuse with RegistryChanged, and ingest routes again from a fresh table.
So a producer never polls the registry, and never routes by a registry older than its commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from stepwell.clock import Clock
from stepwell.model.definition import FunctionDefinition
from stepwell.model.records import Run, RunStatus
from stepwell.model.schedule import Cron, iso_utc
from stepwell.store.base import RegisteredFunction, RegistryChange, Store

log = logging.getLogger("stepwell.registry")


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """The served functions of every app in the database, indexed for routing, at one registry generation."""

    generation: int
    served: dict[str, FunctionDefinition] = field(default_factory=dict)
    by_event: dict[str, tuple[FunctionDefinition, ...]] = field(default_factory=dict)
    crons: tuple[tuple[FunctionDefinition, Cron], ...] = ()
    retired: dict[str, datetime] = field(default_factory=dict)  # name -> since when no app serves it


class Router:
    """Safe to share between threads. `store` is fixed: an app that changes its store makes a new router."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock
        self._table: RoutingTable | None = None
        self._read_at = 0.0
        self._decoded: dict[str, FunctionDefinition] = {}  # version hash -> definition (CEL compiled)
        self._lock = threading.Lock()

    def table(self, *, max_age: float | None = None) -> RoutingTable:
        """The cached table; read again when there is none yet or it is older than `max_age` seconds."""
        table = self._table
        if table is None or (max_age is not None and self.clock.monotonic() - self._read_at > max_age):
            table = self.refresh()
        return table

    def refresh(self) -> RoutingTable:
        listing = self.store.list_functions()
        with self._lock:
            table = self._index(listing.generation, listing.functions)
            self._table, self._read_at = table, self.clock.monotonic()
        return table

    def invalidate(self) -> None:
        self._table = None

    @property
    def crons(self) -> Sequence[tuple[FunctionDefinition, Cron]]:
        """Every registered cron trigger, re-read every few seconds: what a scheduler fires."""
        return self.table(max_age=5.0).crons

    def _index(self, generation: int, rows: Sequence[RegisteredFunction]) -> RoutingTable:
        served: dict[str, FunctionDefinition] = {}
        retired: dict[str, datetime] = {}
        for row in rows:
            if row.retired_at is None:
                served[row.name] = self._decode(row)
            elif row.name not in retired or retired[row.name] < row.retired_at:
                retired[row.name] = row.retired_at
        by_event: dict[str, list[FunctionDefinition]] = {}
        crons: list[tuple[FunctionDefinition, Cron]] = []
        for name in sorted(served):
            definition = served[name]
            for event in definition.document["events"]:
                by_event.setdefault(event, []).append(definition)
            crons += [(definition, cron) for cron in definition.crons]
        return RoutingTable(
            generation,
            served,
            {event: tuple(found) for event, found in by_event.items()},
            tuple(crons),
            {name: since for name, since in retired.items() if name not in served},
        )

    def _decode(self, row: RegisteredFunction) -> FunctionDefinition:
        found = self._decoded.get(row.version)
        if found is None:
            found = self._decoded[row.version] = FunctionDefinition.from_json(row.definition)
        return found


def log_change(app: str, change: RegistryChange) -> None:
    """One line per change a registration made; a name taken from another app is a warning."""
    for name in change.added:
        log.info("registry: app %s now serves function %s", app, name)
    for name in change.changed:
        log.info("registry: app %s registered a new version of function %s", app, name)
    for name in change.retired:
        log.warning("registry: app %s no longer serves function %s; its queued runs wait for a worker", app, name)
    for name, previous in change.moved:
        log.warning(
            "registry: function %s moved from app %s to app %s (the later registration wins)", name, previous, app
        )


def unserved_reason(name: str, since: datetime) -> str:
    return f"no worker serves function {name} since {iso_utc(since)}"


def explain_unserved(runs: Sequence[Run], router: Router) -> list[Run]:
    """Queued runs of a function that no app serves any more say so in `waiting_reason` (the registry as read
    at most a second ago: `app.wait` polls get_run, and one registry read per poll would be wasteful)."""
    if not any(run.status is RunStatus.QUEUED for run in runs):
        return list(runs)
    retired = router.table(max_age=1.0).retired
    return [
        replace(run, waiting_reason=unserved_reason(run.function, retired[run.function]))
        if run.status is RunStatus.QUEUED and run.function in retired
        else run
        for run in runs
    ]
