"""The functions an app has registered, indexed by name and by triggering event."""

from __future__ import annotations

import threading

from stepwell.errors import ConfigurationError
from stepwell.model.function import FunctionSpec, OnEvent
from stepwell.model.schedule import Cron


class Registry:
    def __init__(self) -> None:
        self._functions: dict[str, FunctionSpec] = {}
        self.by_event: dict[str, list[FunctionSpec]] = {}
        self.crons: list[tuple[FunctionSpec, Cron]] = []  # (function, one of its cron triggers)
        self._lock = threading.Lock()

    def add(self, spec: FunctionSpec) -> None:
        with self._lock:
            if spec.name in self._functions:
                raise ConfigurationError(f"function {spec.name!r} is already registered on this app")
            self._functions[spec.name] = spec
            for trigger in spec.triggers:
                if isinstance(trigger, OnEvent):
                    self.by_event.setdefault(trigger.event, []).append(spec)
                elif isinstance(trigger, Cron) and (spec, trigger) not in self.crons:
                    self.crons.append((spec, trigger))

    def get(self, name: str) -> FunctionSpec | None:
        return self._functions.get(name)

    def specs(self) -> list[FunctionSpec]:
        return [self._functions[name] for name in sorted(self._functions)]

    def names(self) -> list[str]:
        return sorted(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions
