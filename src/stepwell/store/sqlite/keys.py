"""The SQLite store's ordering-key verbs (set_key_paused, drain_key, skip_key), as a mixin of
SQLiteStore; the rules are the planner's (plan/lines.py), executed in flow.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.store.sqlite import flow, lifecycle
from stepwell.store.sqlite.waiting import Q


class KeyVerbs:
    """set_key_paused, drain_key, skip_key (see Store)."""

    if TYPE_CHECKING:

        def _write(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _read(self, operation: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _now(self, now: datetime | None) -> int: ...

    def set_key_paused(self, function: str, key: str, paused: bool, *, now: datetime | None = None) -> None:
        with self._write("set_key_paused") as conn:
            flow.set_paused(conn, function, key, paused)

    def drain_key(self, function: str, key: str, *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        with self._write("drain_key") as conn:
            pending = [run_id for (run_id,) in conn.execute(Q["drain_key"], {"function": function, "key": key})]
            return [run_id for run_id in pending if lifecycle.cancel(conn, run_id, at)]

    def skip_key(self, function: str, key: str, *, now: datetime | None = None) -> str | None:
        with self._write("skip_key") as conn:
            return flow.skip_parked(conn, function, key)
