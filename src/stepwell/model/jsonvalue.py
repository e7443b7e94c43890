"""Checking and encoding the JSON values Stepwell stores (event data, step and run outputs).

orjson would quietly turn datetimes, dataclasses and NaN into something; a stored value must
replay exactly, so anything that is not plain JSON is refused with the path where it sits.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from stepwell.errors import OutputNotSerializable

JSON = Any  # a value made only of dict[str, JSON], list, str, int, float, bool, None

_MAX_DEPTH = 256
_INT_RANGE = (-(2**63), 2**64 - 1)


def encode(value: object, *, where: str) -> bytes:
    """`value` as JSON bytes, or OutputNotSerializable naming `where`, the path and the type."""
    _check(value, where, "$", 0, set())
    return orjson.dumps(value)


def decode(data: bytes | str | None) -> JSON:
    return None if data is None else orjson.loads(data)


def normalize(value: object, *, where: str) -> tuple[bytes, JSON]:
    """Encoded bytes plus the value as a replay will see it (tuples become lists)."""
    data = encode(value, where=where)
    return data, orjson.loads(data)


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
    if depth >= _MAX_DEPTH:
        raise OutputNotSerializable(where, path, type(value).__name__, f"nested deeper than {_MAX_DEPTH}")
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
