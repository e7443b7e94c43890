"""Flow control on PostgreSQL, at the two moments where concurrent transactions could lose a wake-up.

Another session holds the row of an ordering key (or of a concurrency slot), as a transaction
that is putting a new run in line (or holding a run back for a full slot) does, while the store
ends the run that holds the key (or the slot). The store must wait for that row, and then see
the newcomer: otherwise the new run would wait for a promotion that never comes.
The concurrent case at large is in tests/conformance/test_store_flow_concurrency.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.model.ids import new_id
from stepwell.store.base import Complete, NewEvent, NewRun, RunFlow, SlotClaim, Store
from tests.conftest import database_url_for
from tests.pg_helpers import wait_until

pytestmark = pytest.mark.postgres
LEASE = timedelta(seconds=30)


@pytest.fixture
def pg(tmp_path: Path, clock: VirtualClock) -> Iterator[tuple[Store, psycopg.Connection[Any]]]:
    """The store, and another session on its schema (in a transaction of its own)."""
    url = database_url_for("postgres", tmp_path)
    store = open_store(url, clock)
    store.migrate()
    with psycopg.connect(url) as other:
        yield store, other
    store.close()


def _send(store: Store, clock: VirtualClock, flow: RunFlow) -> str:
    run = NewRun(new_id(clock.now()), "f", max_attempts=3, flow=flow)
    store.append_events([NewEvent(new_id(clock.now()), "e", orjson.dumps({}), None, (run,))])
    return run.id


def _settle_while_blocked(store: Store, other: psycopg.Connection[Any], settle: Complete) -> threading.Thread:
    """Settle in a thread; return once that settlement waits for a row lock the other session holds."""
    thread = threading.Thread(target=store.settle_runs, args=([settle],))
    thread.start()
    pid = other.info.backend_pid
    with psycopg.connect(other.info.dsn, autocommit=True) as watcher:
        wait_until(
            lambda: bool(
                watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid]
                ).fetchone()[0]  # type: ignore[index]
            ),
            5,
            "the settlement to wait for the other session's lock",
        )
    return thread


def test_a_run_joining_a_line_while_its_head_ends_is_promoted(
    pg: tuple[Store, psycopg.Connection[Any]], clock: VirtualClock
) -> None:
    store, other = pg
    head = _send(store, clock, RunFlow(ordering_key="k"))
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert claimed.run_id == head
    # The other session is an ingest putting a run in line: it holds the key, the head is busy.
    other.execute("SELECT head FROM ordering_keys WHERE function = 'f' AND key = 'k' FOR UPDATE")
    ending = _settle_while_blocked(store, other, Complete(claimed.lease, b"null"))
    newcomer = new_id(clock.now())
    other.execute(
        "INSERT INTO runs (id, function, status, max_attempts, available_at, created_at, flow, hold, ordering_key)"
        " VALUES (%s, 'f', 'queued', 3, %s, %s, 4, 'ordering', 'k')",
        [newcomer, clock.now(), clock.now()],
    )
    other.commit()
    ending.join(10)
    [next_run] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert next_run.run_id == newcomer, "the key went to the run that joined its line"


def test_a_run_held_for_a_full_slot_while_the_slot_is_given_back_is_promoted(
    pg: tuple[Store, psycopg.Connection[Any]], clock: VirtualClock
) -> None:
    store, other = pg
    limit = RunFlow(slots=(SlotClaim("f#c0", "*", 1),))
    holder = _send(store, clock, limit)
    [claimed] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert claimed.run_id == holder
    waiter = _send(store, clock, limit)
    # The other session is a claim admitting `waiter`: it holds the slot's row, and finds the slot full.
    other.execute("SELECT in_use FROM slots WHERE scope = 'f#c0' AND key = '*' FOR UPDATE")
    ending = _settle_while_blocked(store, other, Complete(claimed.lease, b"null"))
    other.execute("UPDATE runs SET hold = 'concurrency' WHERE id = %s", [waiter])
    other.execute("UPDATE run_slots SET waiting = true WHERE run_id = %s", [waiter])
    other.commit()
    ending.join(10)
    [next_run] = store.claim_runs(worker_id="w", limit=1, lease=LEASE)
    assert next_run.run_id == waiter, "the slot went to the run waiting for it"
