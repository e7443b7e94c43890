"""Identifiers: time-ordered, random, URL-safe (ULID layout: 48-bit ms time + 80 random bits)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import NewType

RunId = NewType("RunId", str)
EventId = NewType("EventId", str)

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now: datetime) -> str:
    """A 26-character id that sorts by creation time."""
    millis = int(now.timestamp() * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_token() -> str:
    """A lease fencing token: 128 random bits."""
    return os.urandom(16).hex()
