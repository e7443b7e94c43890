"""API keys for the HTTP API: scopes, the token format, hashing and checking. Pure, no I/O.

A token is `sw_<id>_<secret>`: the id (64 random bits, hex) names the stored row so that a check
is one lookup by primary key; the secret is 256 random bits. Only the SHA-256 of the whole token
is stored: the token is random and long, so a plain hash is as good as a slow one here (nothing to
brute-force), and it keeps a check cheap on the ingest path. Comparison is in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from stepwell.errors import ConfigurationError

_TOKEN = re.compile(r"^sw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/@-]{0,99}$")


class Scope(StrEnum):
    """What a key may do. `admin` grants everything; `operate` also grants `read`."""

    INGEST = "ingest"  # send events, nothing else
    READ = "read"  # list and get runs, events, dead letters, functions
    OPERATE = "operate"  # cancel, replay, redrive, pause/resume/drain/skip keys
    ADMIN = "admin"  # manage API keys


_IMPLIED = {
    Scope.ADMIN: frozenset(Scope),
    Scope.OPERATE: frozenset({Scope.OPERATE, Scope.READ}),
    Scope.READ: frozenset({Scope.READ}),
    Scope.INGEST: frozenset({Scope.INGEST}),
}


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None = None

    def allows(self, scope: Scope) -> bool:
        return self.revoked_at is None and any(scope in _IMPLIED[held] for held in self.scopes)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """What the store writes for a new key: its id, name, scopes and the hash of its token."""

    id: str
    name: str
    scopes: frozenset[Scope]
    token_hash: str


@dataclass(frozen=True, slots=True)
class StoredApiKey:
    """A key as the store holds it, with the hash to check a presented token against."""

    key: ApiKey
    token_hash: str


def parse_scopes(values: object) -> frozenset[Scope]:
    """Scopes from names ('read', 'operate', ...); at least one; an unknown name is refused by name."""
    if isinstance(values, str):
        values = [part.strip() for part in values.split(",") if part.strip()]
    if not isinstance(values, list | tuple | set | frozenset) or not values:
        raise ConfigurationError(f"scopes: give one or more of {[s.value for s in Scope]}")
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            raise ConfigurationError(f"scopes: {value!r} is not a scope; use {[s.value for s in Scope]}") from None
    return frozenset(scopes)


def check_key_name(name: object) -> str:
    if not isinstance(name, str) or not _KEY_NAME.match(name):
        raise ConfigurationError(f"key name {name!r}: use 1-100 characters from letters, digits, space and _ . : / @ -")
    return name


def new_api_key(name: str, scopes: frozenset[Scope]) -> tuple[NewApiKey, str]:
    """A fresh key to store, and its token (shown once, never stored)."""
    key_id = os.urandom(8).hex()
    secret = _urlsafe(os.urandom(32))
    token = f"sw_{key_id}_{secret}"
    return NewApiKey(key_id, check_key_name(name), scopes, hash_token(token)), token


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_key_id(token: str) -> str | None:
    """The key id a token names, or None when it is not shaped like one of ours."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def token_matches(token: str, stored: StoredApiKey) -> bool:
    """Constant-time comparison of the presented token's hash with the stored one."""
    return hmac.compare_digest(hash_token(token), stored.token_hash)


def _urlsafe(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
