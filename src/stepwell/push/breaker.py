"""A circuit breaker per endpoint URL. Pure: it is told the time, it decides.

Closed: calls go through; `threshold` failures in a row open it for `cooldown`. Open: no run of
the endpoint is claimed (they stay queued and say why). When the cooldown ends it is half-open:
one run is tried; success closes it, failure opens it again with the cooldown doubled (capped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(slots=True)
class Circuit:
    failures: int = 0
    open_until: datetime | None = None
    cooldown: timedelta = timedelta(0)
    probing: bool = False  # half-open: one trial call in flight


@dataclass(slots=True)
class Breaker:
    threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    max_cooldown: timedelta = timedelta(minutes=10)
    circuits: dict[str, Circuit] = field(default_factory=dict)

    def _circuit(self, url: str) -> Circuit:
        return self.circuits.setdefault(url, Circuit())

    def allows(self, url: str, now: datetime) -> bool:
        """May a run of this endpoint be claimed now? (Half-open: only while no trial is in flight.)"""
        circuit = self._circuit(url)
        if circuit.open_until is None:
            return True
        return circuit.open_until <= now and not circuit.probing

    def started(self, url: str, now: datetime) -> None:
        circuit = self._circuit(url)
        if circuit.open_until is not None and circuit.open_until <= now:
            circuit.probing = True

    def succeeded(self, url: str) -> bool:
        """Returns True when this closed an open circuit."""
        circuit = self._circuit(url)
        was_open = circuit.open_until is not None
        self.circuits[url] = Circuit()
        return was_open

    def failed(self, url: str, now: datetime) -> datetime | None:
        """Count a failure; returns the new open-until time when this opened (or re-opened) the circuit."""
        circuit = self._circuit(url)
        circuit.failures += 1
        if circuit.probing or (circuit.open_until is None and circuit.failures >= self.threshold):
            previous = circuit.cooldown
            circuit.cooldown = self.cooldown if not circuit.probing else min(previous * 2, self.max_cooldown)
            circuit.open_until = now + circuit.cooldown
            circuit.probing = False
            return circuit.open_until
        return None

    def open_until(self, url: str) -> datetime | None:
        return self._circuit(url).open_until
