"""The PostgreSQL store's push-endpoint verbs, as a mixin of PostgresStore (one table, three statements)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg.rows import tuple_row

from stepwell.store.postgres.statements import Connection
from stepwell.store.sqlfile import load_queries

P = load_queries("stepwell.store.postgres", "push.sql")


class PushVerbs:
    """set_push_endpoints, push_endpoints, set_push_circuit, push_circuits (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def set_push_endpoints(self, app: str, urls: Mapping[str, str], *, now: datetime | None = None) -> None:
        with self._connection("set_push_endpoints") as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(P["set_push_endpoints_clear"], {"app": app})
            at = self._at(now)
            for name, url in sorted(urls.items()):
                cur.execute(P["set_push_endpoints_upsert"], {"app": app, "name": name, "url": url, "now": at})

    def push_endpoints(self) -> dict[str, str]:
        with self._connection("push_endpoints") as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(P["push_endpoints"])
            return {name: url for name, url in cur.fetchall()}

    def set_push_circuit(self, url: str, open_until: datetime | None) -> None:
        with self._connection("set_push_circuit") as conn, conn.cursor() as cur:
            if open_until is None:
                cur.execute(P["set_push_circuit_close"], {"url": url})
            else:
                cur.execute(P["set_push_circuit_open"], {"url": url, "until": open_until})

    def push_circuits(self) -> dict[str, datetime]:
        with self._connection("push_circuits") as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(P["push_circuits"])
            return {url: until for url, until in cur.fetchall()}
