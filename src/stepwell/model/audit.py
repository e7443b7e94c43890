"""An operator's action, as the audit log keeps it: who (the API key), what, on what, and when.

The dashboard writes one entry for every action it performs (cancel, replay, redrive, pause, ...), so
that "who redrove these 40,000 dead letters?" has an answer that does not depend on anyone's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

MAX_DETAIL = 2000  # characters of detail kept per entry: an entry describes an action, it does not copy data


@dataclass(frozen=True, slots=True)
class NewAuditEntry:
    actor_id: str  # the API key's id ('dev' when the server runs without keys)
    actor_name: str
    action: str  # 'run.cancel', 'dead_letters.redrive', 'key.pause', ...
    target: str  # what it acted on: a run id, 'function/key', a filter
    detail: str = ""  # the outcome, in words ('3 runs redriven')

    def clipped(self) -> NewAuditEntry:
        """The entry with every field cut to a bounded length (a 100 KB key name stays 100 KB elsewhere)."""
        return NewAuditEntry(
            self.actor_id[:100], self.actor_name[:200], self.action[:100], self.target[:500], self.detail[:MAX_DETAIL]
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor_id: str
    actor_name: str
    action: str
    target: str
    detail: str
