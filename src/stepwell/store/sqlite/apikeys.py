"""The SQLite store's API-key verbs, as a mixin of SQLiteStore (one table, four statements)."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepwell.model.apikeys import ApiKey, NewApiKey, StoredApiKey, parse_scopes
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.times import moment, moment_or_none

K = load_queries("stepwell.store.sqlite", "apikeys.sql")


class ApiKeyVerbs:
    """create_api_key, get_api_key, list_api_keys, revoke_api_key (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def create_api_key(self, key: NewApiKey, *, now: datetime | None = None) -> ApiKey:
        params = {"id": key.id, "name": key.name, "scopes": _scopes_text(key), "token_hash": key.token_hash}
        with self._write("create_api_key") as conn:
            (created_at,) = conn.execute(K["create_api_key"], {**params, "now": self._now(now)}).fetchone()
        return ApiKey(key.id, key.name, key.scopes, moment(created_at))

    def get_api_key(self, key_id: str) -> StoredApiKey | None:
        with self._read("get_api_key") as conn:
            row = conn.execute(K["get_api_key"], {"id": key_id}).fetchone()
        return None if row is None else _stored(row)

    def list_api_keys(self) -> list[ApiKey]:
        with self._read("list_api_keys") as conn:
            return [_stored(row).key for row in conn.execute(K["list_api_keys"])]

    def revoke_api_key(self, key_id: str, *, now: datetime | None = None) -> bool:
        with self._write("revoke_api_key") as conn:
            return conn.execute(K["revoke_api_key"], {"id": key_id, "now": self._now(now)}).rowcount == 1


def _scopes_text(key: NewApiKey) -> str:
    return ",".join(sorted(scope.value for scope in key.scopes))


def _stored(row: Any) -> StoredApiKey:
    key_id, name, scopes, created_at, revoked_at, token_hash = row
    key = ApiKey(key_id, name, parse_scopes(scopes), moment(created_at), moment_or_none(revoked_at))
    return StoredApiKey(key, token_hash)
