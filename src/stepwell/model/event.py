"""Validating an event before anything is stored: name, id, timestamp, data and size."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stepwell.errors import ConfigurationError, EventRejected, OutputNotSerializable
from stepwell.model.function import check_name
from stepwell.model.jsonvalue import encode

DEFAULT_MAX_EVENT_BYTES = 512 * 1024
MAX_BATCH_EVENTS = 10_000  # events per `send(list)` call: one transaction, bounded memory


@dataclass(frozen=True, slots=True)
class EventIn:
    """An event as a producer sends it; `data` is an object (None means {}), in Python as over HTTP."""

    name: str
    data: Any = None
    id: str | None = None
    ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class ValidEvent:
    name: str
    data: bytes
    id: str | None
    ts: datetime | None


def validate_event(event: EventIn, *, max_bytes: int, index: int | None = None) -> ValidEvent:
    where = "event" if index is None else f"event #{index}"
    try:
        check_name(event.name, f"{where} name")
    except ConfigurationError as err:
        raise EventRejected(str(err)) from None
    if event.id is not None and (
        not isinstance(event.id, str) or not 1 <= len(event.id) <= 200 or not event.id.isprintable()
    ):
        raise EventRejected(f"{where} id {event.id!r} must be a printable str of 1-200 characters")
    if event.ts is not None and (not isinstance(event.ts, datetime) or event.ts.tzinfo is None):
        raise EventRejected(f"{where} ts {event.ts!r} must be a timezone-aware datetime")
    ts = None if event.ts is None else _in_utc(event.ts, where)
    if event.data is not None and type(event.data) is not dict and not isinstance(event.data, Mapping):
        raise EventRejected(
            f"{where} {event.name!r} data must be an object (a dict; None means {{}}), got "
            f"{type(event.data).__name__} {repr(event.data)[:40]}; nothing was stored. Functions read "
            "ctx.event.data[...]: wrap the value, as in {'value': ...}"
        )
    try:
        data = encode({} if event.data is None else event.data, where=f"{where} {event.name!r} data")
    except OutputNotSerializable as err:
        raise EventRejected(str(err).replace(" returned a ", " has a ")) from None
    if len(data) > max_bytes:
        raise EventRejected(
            f"{where} {event.name!r} is {len(data)} bytes of JSON, over the limit of {max_bytes} bytes "
            "(raise App(max_event_bytes=...) or store large payloads elsewhere and send a reference)"
        )
    return ValidEvent(event.name, data, event.id, ts)


def _in_utc(ts: datetime, where: str) -> datetime:
    """Stored in UTC: any offset Python accepts (up to ±23:59) is valid, while PostgreSQL refuses
    offsets beyond ±15:59, and one instant must not depend on how its sender wrote it."""
    try:
        return ts.astimezone(UTC)
    except (OverflowError, ValueError):
        raise EventRejected(f"{where} ts {ts.isoformat()} is out of range in UTC") from None


_ENTRY_KEYS = frozenset(("name", "data", "id", "ts"))


def as_event_in(item: Any, index: int) -> EventIn:
    """One entry of a batch: an EventIn, or a dict with name, data and optional id and ts."""
    if isinstance(item, EventIn):
        return item
    if isinstance(item, dict):
        if "name" not in item or not item.keys() <= _ENTRY_KEYS:
            raise EventRejected(
                f"event #{index} must have 'name' and may have 'data', 'id', 'ts'; got keys {sorted(item)}"
            )
        return EventIn(item["name"], item.get("data"), item.get("id"), item.get("ts"))
    raise EventRejected(f"event #{index} is a {type(item).__name__}; send dicts with 'name' and 'data', or EventIn")


def batch_of(items: Iterable[Any]) -> list[EventIn]:
    """A batch for one `send` call, read one entry at a time (a generator is never read past the
    limit): more than MAX_BATCH_EVENTS entries is refused before anything is written."""
    if isinstance(items, str | bytes | dict):
        raise EventRejected(f"a batch is a list of events, not a {type(items).__name__}")
    batch: list[EventIn] = []
    for index, item in enumerate(items):
        if index >= MAX_BATCH_EVENTS:
            raise EventRejected(
                f"a batch holds at most {MAX_BATCH_EVENTS} events; this one has more "
                "(send it in several calls: each call is one transaction)"
            )
        batch.append(as_event_in(item, index))
    return batch
