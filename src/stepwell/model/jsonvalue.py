"""Checking and encoding the JSON values Stepwell stores (event data, step and run outputs).

orjson would quietly turn datetimes, dataclasses and NaN into something; a stored value must
replay exactly, so anything that is not plain JSON is refused with the path where it sits.
That includes what orjson itself cannot write: strings with lone surrogates (not UTF-8) and
nesting deeper than it recurses (254), which the engine's own wrappers (a wait's origin
document, a batch's event list) need a few levels of: hence `MAX_NESTING`.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from stepwell.errors import OutputNotSerializable

JSON = Any  # a value made only of dict[str, JSON], list, str, int, float, bool, None

MAX_NESTING = 200  # dicts and lists inside each other; documented in docs/guarantees.md
_INT_RANGE = (-(2**63), 2**64 - 1)


# orjson hands these to the (absent) default, so dumping them raises instead of writing a look-alike
_PLAIN_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def encode(value: object, *, where: str) -> bytes:
    """`value` as JSON bytes, or OutputNotSerializable naming `where`, the path and the type."""
    plain = _plain(value)
    return plain if plain is not None else _checked(value, where)


def _checked(value: object, where: str) -> bytes:
    """The slow path: our own walk finds what is not plain JSON and says where it sits."""
    _check(value, where, "$", 0, set())
    try:
        return orjson.dumps(value)
    except TypeError:  # a str that is not valid UTF-8 (a lone surrogate): find where it sits
        path = _surrogate_path(value, "$")
        if path is None:
            raise
        raise OutputNotSerializable(where, path, "str", "a lone surrogate is not valid UTF-8") from None


def decode(data: bytes | str | None) -> JSON:
    return None if data is None else orjson.loads(data)


def normalize(value: object, *, where: str) -> tuple[bytes, JSON]:
    """Encoded bytes plus the value as a replay will see it (tuples become lists)."""
    data = encode(value, where=where)
    return data, orjson.loads(data)


def _plain(value: object) -> bytes | None:
    """The fast path (a bulk send validates thousands of events): orjson's own walk in C, accepted only
    when it proves what `_check` would: the bytes decode back to a value equal to the one given (so no
    NaN or infinity written as null, no tuple, UUID or enum written as something else), no subclass,
    datetime or dataclass (refused by the options), no int out of range, lone surrogate or cycle (orjson
    raises) and at most MAX_NESTING containers in all (a bound on the depth: brackets inside strings only
    make the count larger). None: take the slow path, which accepts or names what is wrong and where."""
    try:
        data = orjson.dumps(value, option=_PLAIN_ONLY)
    except TypeError:
        return None
    if data.count(b"{") + data.count(b"[") > MAX_NESTING or orjson.loads(data) != value:
        return None
    return data


def _check(value: object, where: str, path: str, depth: int, seen: set[int]) -> None:
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise OutputNotSerializable(where, path, "int", "outside the 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OutputNotSerializable(where, path, "float", f"{value} is not valid JSON")
        return
    if depth >= MAX_NESTING:
        short = path if len(path) <= 100 else f"{path[:40]}...{path[-40:]}"
        raise OutputNotSerializable(where, short, type(value).__name__, f"nested deeper than {MAX_NESTING} levels")
    if type(value) in (dict, list, tuple):
        if id(value) in seen:
            raise OutputNotSerializable(where, path, type(value).__name__, "circular reference")
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise OutputNotSerializable(where, f"{path} key {key!r}", type(key).__name__, "keys must be str")
                _check(item, where, f"{path}.{key}", depth + 1, seen)
        else:
            for index, item in enumerate(value):  # type: ignore[arg-type]
                _check(item, where, f"{path}[{index}]", depth + 1, seen)
        seen.discard(id(value))
        return
    raise OutputNotSerializable(where, path, type(value).__name__)


def _surrogate_path(value: object, path: str) -> str | None:
    """The path of the first str (value or key) that cannot be encoded as UTF-8; the slow walk,
    taken only after orjson refused the value."""
    if isinstance(value, str):
        return None if _utf8(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if not _utf8(key):
                return f"{path} key {key!r}"
            found = _surrogate_path(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _surrogate_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
