"""The PostgreSQL store's ordering-key verbs (set_key_paused, drain_key, skip_key), as a mixin of
PostgresStore; the rules are the planner's (plan/lines.py), executed in flow.py."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING

from stepwell.store.postgres import flow, lifecycle, waiting
from stepwell.store.postgres.statements import Connection, run


class KeyVerbs:
    """set_key_paused, drain_key, skip_key (see Store)."""

    if TYPE_CHECKING:

        def _connection(
            self, operation: str, caller: object | None = None
        ) -> contextlib.AbstractContextManager[Connection]: ...
        def _at(self, now: datetime | None) -> datetime | None: ...

    def set_key_paused(self, function: str, key: str, paused: bool, *, now: datetime | None = None) -> None:
        with self._connection("set_key_paused") as conn, conn.transaction():
            flow.set_paused(conn, function, key, paused)

    def drain_key(self, function: str, key: str, *, now: datetime | None = None) -> list[str]:
        at = self._at(now)
        with self._connection("drain_key") as conn:
            with conn.transaction():
                found = run(conn, "drain_key", {"function": function, "key": key}).fetchall()
                pending = [run_id for (run_id,) in found]
                ids, fan_outs = lifecycle.cancel(conn, pending, at) if pending else ([], [])
            waiting.finish_fan_outs(conn, fan_outs, at)
        cancelled = set(ids)
        return [run_id for run_id in pending if run_id in cancelled]

    def skip_key(self, function: str, key: str, *, now: datetime | None = None) -> str | None:
        with self._connection("skip_key") as conn, conn.transaction():
            return flow.skip_parked(conn, function, key)
