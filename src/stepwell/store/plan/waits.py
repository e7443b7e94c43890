"""Wait resolution, decided in memory: which waiting steps and cancel_on waits new events match.

Waits are found through their index (event name, match path, canonical value at that path):
`lookups` says which index entries an event needs. The rows found are offered to `WaitMatches`,
event after event in batch order, which checks each wait's CEL condition and keeps the first
event that matches a waiting step, and the first that matches one of a run's cancel_on waits.
Its change-set: the steps to resolve (with the matching event as their output) and the runs to
cancel. The backend then resolves the steps and cancels the runs, in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from stepwell.model.matching import canonical_value_at, event_document
from stepwell.store.base import ConditionCheck, NewEvent


@dataclass(frozen=True, slots=True)
class Offered:
    """A new event, as waits see it: its document (for conditions) and its JSON (a resolved step's output)."""

    event_id: str
    name: str
    document: dict[str, Any]
    output: bytes


def offered(event: NewEvent) -> Offered:
    document = event_document(event.id, event.name, orjson.loads(event.data), event.ts)
    return Offered(event.id, event.name, document, orjson.dumps(document))


def lookups(event: Offered, paths: Sequence[str | None]) -> list[tuple[str | None, str | None]]:
    """The (path, canonical value) index entries to look up for `event`, given the match paths that
    waits on its name use; a path the event has no value at matches nothing."""
    found = []
    for path in paths:
        value = None if path is None else canonical_value_at(event.document, path)
        if path is None or value is not None:
            found.append((path, value))
    return found


@dataclass
class WaitMatches:
    """The change-set: (run, step) -> (event, output) to resolve; run -> event for the runs to cancel."""

    conditions: ConditionCheck | None
    resolve: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    cancel: dict[str, str] = field(default_factory=dict)

    def offer(self, event: Offered, rows: Sequence[tuple[str, str, str | None, bytes, str]]) -> None:
        """Waits found for `event`: (run, step, condition, origin event JSON, kind 'event' or 'cancel')."""
        for run_id, step_id, condition, origin, kind in rows:
            if (run_id, step_id) in self.resolve or run_id in self.cancel:
                continue
            if condition and (
                self.conditions is None or not self.conditions(condition, orjson.loads(origin), event.document)
            ):
                continue
            if kind == "cancel":
                self.cancel[run_id] = event.event_id
            else:
                self.resolve[(run_id, step_id)] = (event.event_id, event.output)
