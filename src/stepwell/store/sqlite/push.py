"""The SQLite store's push-endpoint verbs, as a mixin of SQLiteStore (one table, three statements)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.times import moment

P = load_queries("stepwell.store.sqlite", "push.sql")


class PushVerbs:
    """set_push_endpoints, push_endpoints, set_push_circuit, push_circuits (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def set_push_endpoints(self, app: str, urls: Mapping[str, str], *, now: datetime | None = None) -> None:
        with self._write("set_push_endpoints") as conn:
            conn.execute(P["set_push_endpoints_clear"], {"app": app})
            at = self._now(now)
            for name, url in sorted(urls.items()):
                conn.execute(P["set_push_endpoints_upsert"], {"app": app, "name": name, "url": url, "now": at})

    def push_endpoints(self) -> dict[str, str]:
        with self._read("push_endpoints") as conn:
            return {name: url for name, url in conn.execute(P["push_endpoints"])}

    def set_push_circuit(self, url: str, open_until: datetime | None) -> None:
        with self._write("set_push_circuit") as conn:
            if open_until is None:
                conn.execute(P["set_push_circuit_close"], {"url": url})
            else:
                conn.execute(P["set_push_circuit_open"], {"url": url, "until": self._now(open_until)})

    def push_circuits(self) -> dict[str, datetime]:
        with self._read("push_circuits") as conn:
            return {url: moment(until) for url, until in conn.execute(P["push_circuits"])}
