"""Search by a payload field: `data.customer_id = 42`, read once here for every edge.

The shape is the one Inngest's and Temporal's users type: a dotted path into the event's data, `=`,
and a JSON value (`42`, `"gold"`, `true`, `null`; a bare word is a string). The path becomes a
bound parameter of the store's query (a JSON path on SQLite, a text array on PostgreSQL), never
SQL text, so nothing the user types reaches the statement itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from stepwell.errors import InvalidPayloadFilter

Scalar = str | int | float | bool | None
MAX_DEPTH = 16
_SEGMENT = re.compile(r"([^.\[\]\"\\]+)((?:\[\d{1,6}\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class PayloadFilter:
    """Runs whose input has `value` at `path` (keys and list indexes under the event's data)."""

    path: tuple[str | int, ...]
    value: Scalar

    @property
    def text(self) -> str:
        """The filter as the user would type it again (for links and the search box)."""
        parts = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in self.path)
        return f"data{parts} = {orjson.dumps(self.value).decode()}"

    @property
    def kind(self) -> str:
        """'text', 'number', 'true', 'false' or 'null': how the store compares."""
        if self.value is None or isinstance(self.value, bool):
            return orjson.dumps(self.value).decode()
        return "text" if isinstance(self.value, str) else "number"

    @property
    def json_path(self) -> str:
        """SQLite's JSON path: `$."customer_id"[0]` (keys quoted, so any character but `"` is a key)."""
        return "$" + "".join(f"[{part}]" if isinstance(part, int) else f'."{part}"' for part in self.path)

    @property
    def key_path(self) -> list[str]:
        """PostgreSQL's `#>` path: every key and index as text."""
        return [str(part) for part in self.path]


def parse_payload_filter(text: str) -> PayloadFilter:
    """`data.a.b[0] = VALUE` -> PayloadFilter; InvalidPayloadFilter names what is wrong."""
    field, equals, raw = text.partition("=")
    if not equals:
        raise InvalidPayloadFilter(f"payload search {text!r} has no '='; write it like data.customer_id = 42")
    return PayloadFilter(_path(field.strip()), _value(raw.strip()))


def _path(field: str) -> tuple[str | int, ...]:
    for prefix in ("event.data", "data"):
        if field == prefix or field.startswith(prefix + ".") or field.startswith(prefix + "["):
            field = field[len(prefix) :]
            break
    else:
        raise InvalidPayloadFilter(f"payload field {field!r} must start with 'data.' (the event's data), e.g. data.id")
    leading = _leading_indexes(field)
    path: list[str | int] = [int(index) for index in _INDEX.findall(leading)]
    rest = field[len(leading) :]
    if rest and not rest.startswith("."):
        raise InvalidPayloadFilter(f"payload field part {rest!r} must follow a dot, like data.items[0].sku")
    for segment in rest.split(".")[1:]:
        match = _SEGMENT.fullmatch(segment.strip())
        if match is None:
            raise InvalidPayloadFilter(
                f"payload field part {segment!r} is not a key: a key may hold any character but "
                "quotes, dots, brackets and backslashes; write [N] for a list index"
            )
        path.append(match.group(1))
        path.extend(int(index) for index in _INDEX.findall(match.group(2)))
    if not path:
        raise InvalidPayloadFilter("payload field names no key under data; write e.g. data.customer_id")
    if len(path) > MAX_DEPTH:
        raise InvalidPayloadFilter(f"payload field is deeper than {MAX_DEPTH} levels")
    return tuple(path)


def _leading_indexes(field: str) -> str:
    match = re.match(r"(?:\[\d{1,6}\])*", field)
    return match.group(0) if match else ""


def _value(raw: str) -> Scalar:
    if not raw:
        raise InvalidPayloadFilter("payload search has no value after '='; write e.g. data.plan = \"gold\"")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if raw[0] in "\"'[{":
            raise InvalidPayloadFilter(
                f"payload value {raw!r} is not valid JSON (a string needs closing quotes)"
            ) from None
        return raw  # a bare word: a string
    if isinstance(value, (dict, list)):
        raise InvalidPayloadFilter("payload value must be a string, number, true, false or null, not an object or list")
    return value  # type: ignore[no-any-return]
