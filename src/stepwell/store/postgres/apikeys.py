"""The PostgreSQL store's API-key verbs, as a mixin of PostgresStore (one table, four statements)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.rows import tuple_row

from stepwell.model.apikeys import ApiKey, NewApiKey, StoredApiKey, parse_scopes
from stepwell.store.postgres.statements import Connection, Cursor
from stepwell.store.sqlfile import load_queries

K = load_queries("stepwell.store.postgres", "apikeys.sql")


class ApiKeyVerbs:
    """create_api_key, get_api_key, list_api_keys, revoke_api_key (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def create_api_key(self, key: NewApiKey, *, now: datetime | None = None) -> ApiKey:
        scopes = ",".join(sorted(scope.value for scope in key.scopes))
        params = {"id": key.id, "name": key.name, "scopes": scopes, "token_hash": key.token_hash, "now": self._at(now)}
        with self._connection("create_api_key") as conn:
            row = _run(conn, "create_api_key", params).fetchone()
        assert row is not None
        (created_at,) = row
        return ApiKey(key.id, key.name, key.scopes, created_at)

    def get_api_key(self, key_id: str) -> StoredApiKey | None:
        with self._connection("get_api_key") as conn:
            row = _run(conn, "get_api_key", {"id": key_id}).fetchone()
        return None if row is None else _stored(row)

    def list_api_keys(self) -> list[ApiKey]:
        with self._connection("list_api_keys") as conn:
            return [_stored(row).key for row in _run(conn, "list_api_keys", {}).fetchall()]

    def revoke_api_key(self, key_id: str, *, now: datetime | None = None) -> bool:
        with self._connection("revoke_api_key") as conn:
            return _run(conn, "revoke_api_key", {"id": key_id, "now": self._at(now)}).rowcount == 1


def _run(conn: Connection, name: str, params: dict[str, Any]) -> Cursor:
    return conn.cursor(row_factory=tuple_row).execute(K[name], params)


def _stored(row: Any) -> StoredApiKey:
    key_id, name, scopes, created_at, revoked_at, token_hash = row
    return StoredApiKey(ApiKey(key_id, name, parse_scopes(scopes), created_at, revoked_at), token_hash)
