"""How a waiting step matches an event: a path into both events, compared as canonical JSON."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from stepwell.errors import ConfigurationError
from stepwell.model.records import Event

_PATH = re.compile(r"^(data|name|id)(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def check_path(path: str) -> str:
    if not isinstance(path, str) or not _PATH.match(path):
        raise ConfigurationError(
            f"match={path!r} must be a dotted path into the event such as 'data.sermon_id' (data, name or id first)"
        )
    return path


def event_document(event_id: str | None, name: str, data: Any, ts: datetime | None) -> dict[str, Any]:
    """The event as CEL and paths see it."""
    return {"id": event_id, "name": name, "data": data, "ts": ts.isoformat() if ts else None}


def document_of(event: Event) -> dict[str, Any]:
    return event_document(event.id, event.name, event.data, event.ts)


def canonical_value_at(document: dict[str, Any], path: str) -> str | None:
    """Canonical JSON of the value at `path`, or None when the path is absent."""
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
