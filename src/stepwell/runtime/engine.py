"""What running a function needs besides the run itself: the functions, the store, the clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stepwell.clock import Clock
from stepwell.errors import ConfigurationError
from stepwell.model.event import EventIn
from stepwell.model.function import FunctionSpec
from stepwell.runtime.ingest import ingest
from stepwell.runtime.registry import Registry
from stepwell.runtime.routing import Router
from stepwell.store.base import AcceptedEvent, Store


@dataclass(frozen=True, slots=True)
class Engine:
    registry: Registry
    store: Store
    clock: Clock
    max_event_bytes: int
    max_output_bytes: int = 4 * 1024 * 1024  # a step's or a run's stored output
    router: Router | None = None  # routes events from the store's registry; made on demand when None

    def send(self, events: Sequence[EventIn], *, connection: object | None = None) -> list[AcceptedEvent]:
        """Route from the store's registry (not from `registry`, this process's own functions).

        `connection`: write inside the caller's open database transaction (the outbox pattern)."""
        return ingest(
            events,
            router=self.router or Router(self.store, self.clock),
            store=self.store,
            clock=self.clock,
            max_bytes=self.max_event_bytes,
            connection=connection,
        )

    def function(self, target: Any) -> FunctionSpec:
        """The spec of a decorated function (anything with `.spec`) or of a registered name."""
        spec = getattr(target, "spec", None)
        if isinstance(spec, FunctionSpec):
            if self.registry.get(spec.name) is spec:
                return spec
            owner = getattr(getattr(target, "app", None), "name", "another app")
            raise ConfigurationError(
                f"function {spec.name!r} is registered on app {owner!r}, not on the app running this run; "
                "a run can only invoke or fan out to functions of its own app (register it there)"
            )
        if isinstance(target, str) and (found := self.registry.get(target)) is not None:
            return found
        raise ConfigurationError(f"{target!r} is not a function of this app; pass the decorated function or its name")
