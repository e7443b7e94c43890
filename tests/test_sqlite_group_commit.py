"""Group commit on SQLite (store/sqlite/groupcommit.py): writers that come together share one COMMIT.

Concurrent `send`s each return only once their event is committed (another connection sees it),
a writer that fails inside a group is undone alone and raises alone, the others' work stays, and
under contention groups of more than one writer really form (the store counts its COMMITs).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

import stepwell
from stepwell.clock import SystemClock
from stepwell.errors import RegistryChanged, StoreUnavailable
from stepwell.store.base import NewEvent
from stepwell.store.sqlite.groupcommit import GroupCommit
from stepwell.store.sqlite.store import SQLiteStore

SENDERS = 8
SENDS = 40


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "stepwell.db", clock=SystemClock())
    opened.migrate()
    yield opened
    opened.close()


def _event(event_id: str) -> NewEvent:
    return NewEvent(event_id, "tick", orjson.dumps({"id": event_id}), None, ())


def _in_threads(count: int, body: Callable[[int], None]) -> list[Exception]:
    """Run `body(n)` in `count` threads started together; returns what they raised."""
    errors: list[Exception] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        start.wait()
        try:
            body(n)
        except Exception as err:  # noqa: BLE001 (reported to the test thread, which asserts there were none)
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def test_concurrent_sends_are_each_committed_when_send_returns_and_share_commits(tmp_path: Path) -> None:
    app = stepwell.App("group-commit")
    store = SQLiteStore(tmp_path / "stepwell.db", clock=SystemClock())
    store.migrate()
    app.bind(store)
    before = store.write_stats()

    def sender(n: int) -> None:
        other = sqlite3.connect(tmp_path / "stepwell.db")  # a second connection, as another process has
        try:
            for k in range(SENDS):
                event_id = app.send("tick", {"n": n, "k": k}, id=f"s{n}-{k}")
                seen = other.execute("SELECT count(*) FROM events WHERE id = ?", (event_id,)).fetchone()
                assert seen == (1,), f"{event_id} returned before it was committed"
        finally:
            other.close()

    try:
        assert _in_threads(SENDERS, sender) == []
        after = store.write_stats()
        writes, commits = after.writes - before.writes, after.commits - before.commits
        assert writes == SENDERS * SENDS
        assert commits < writes and after.largest > 1, f"no group formed: {writes} writes, {commits} commits"
    finally:
        app.close()
    reopened = SQLiteStore(tmp_path / "stepwell.db", clock=SystemClock())
    try:
        assert len(reopened.list_recent_events(limit=SENDERS * SENDS + 1)) == SENDERS * SENDS
    finally:
        reopened.close()


def test_a_writer_that_fails_in_a_group_is_undone_alone_and_the_others_commit(store: SQLiteStore) -> None:
    # the store's writer, held by `first` until both other writers wait: no age limit for the group
    group = store._group = GroupCommit(store._writer, 1.0, span=60)
    held, release = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def first() -> None:
        with store._write("first") as conn:
            conn.execute("INSERT INTO events (id, name, data, ts, received_at, disposition)"
                         " SELECT 'first', 'tick', '{}', 0, 0, 'no_match'")  # fmt: skip
            held.set()
            release.wait(10)

    def good() -> None:
        outcomes["good"] = store.append_events([_event("good")])

    def bad() -> None:
        try:
            store.append_events([_event("bad")], registry_generation=999)
        except RegistryChanged as err:
            outcomes["bad"] = err

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert held.wait(10)
    threads += [threading.Thread(target=good), threading.Thread(target=bad)]
    for thread in threads[1:]:
        thread.start()
    _wait_until(lambda: group.waiting == 2)
    before = store.write_stats()
    release.set()
    for thread in threads:
        thread.join(10)
    after = store.write_stats()
    assert isinstance(outcomes["bad"], RegistryChanged)
    assert [a.id for a in outcomes["good"]] == ["good"]  # type: ignore[attr-defined]
    assert (after.writes - before.writes, after.commits - before.commits, after.largest) == (3, 1, 3)
    stored = {event.id for event in store.list_recent_events(limit=10)}
    assert stored == {"first", "good"}


def test_a_lost_transaction_fails_every_writer_of_the_group_and_keeps_nothing(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "raw.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    group = GroupCommit(conn, 1.0, span=60)
    held, release = threading.Event(), threading.Event()
    raised: dict[str, BaseException] = {}

    def first() -> None:
        try:
            with group.transaction() as c:
                c.execute("INSERT INTO t VALUES (1)")
                held.set()
                release.wait(10)
        except sqlite3.Error as err:
            raised["first"] = err

    def loses_it() -> None:
        try:
            with group.transaction() as c:
                c.execute("INSERT INTO t VALUES (2)")
                c.execute("ROLLBACK")  # as SQLite itself does on a full disk: the whole transaction is gone
                raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.Error as err:
            raised["lost"] = err

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert held.wait(10)
    threads.append(threading.Thread(target=loses_it))
    threads[1].start()
    _wait_until(lambda: group.waiting == 1)
    release.set()
    for thread in threads:
        thread.join(10)
    assert "full" in str(raised["lost"]) and "full" in str(raised["first"])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert group.stats().commits == 0
    with group.transaction() as c:  # the connection is usable again
        c.execute("INSERT INTO t VALUES (3)")
    assert conn.execute("SELECT n FROM t").fetchall() == [(3,)]
    conn.close()


def test_a_writer_alone_commits_at_once_and_a_group_stops_at_its_limit(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "raw.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    group = GroupCommit(conn, 1.0, limit=2, span=60)
    with group.transaction() as c:
        c.execute("INSERT INTO t VALUES (0)")
    assert (group.stats().writes, group.stats().commits) == (1, 1)
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        with group.transaction() as c:
            c.execute("INSERT INTO t VALUES (1)")
            held.set()
            release.wait(10)

    def later(n: int) -> None:
        with group.transaction() as c:
            c.execute("INSERT INTO t VALUES (?)", (n,))

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert held.wait(10)
    threads += [threading.Thread(target=later, args=(n,)) for n in (2, 3, 4)]
    for thread in threads[1:]:
        thread.start()
    _wait_until(lambda: group.waiting == 3)
    release.set()
    for thread in threads:
        thread.join(10)
    stats = group.stats()
    assert (stats.writes, stats.largest) == (5, 2) and stats.commits == 3
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (5,)
    conn.close()


def test_a_leader_that_fails_rolls_back_alone_and_the_writers_waiting_commit_without_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "raw.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    group = GroupCommit(conn, 1.0, span=60)
    held, release = threading.Event(), threading.Event()
    raised: list[BaseException] = []

    def leader() -> None:
        try:
            with group.transaction() as c:
                c.execute("INSERT INTO t VALUES (1)")
                held.set()
                release.wait(10)
                raise ValueError("bad input")
        except ValueError as err:
            raised.append(err)

    def follower(n: int) -> None:
        with group.transaction() as c:
            c.execute("INSERT INTO t VALUES (?)", (n,))

    threads = [threading.Thread(target=leader)]
    threads[0].start()
    assert held.wait(10)
    threads += [threading.Thread(target=follower, args=(n,)) for n in (2, 3)]
    for thread in threads[1:]:
        thread.start()
    _wait_until(lambda: group.waiting == 2)
    release.set()
    for thread in threads:
        thread.join(10)
    assert [str(err) for err in raised] == ["bad input"]
    assert conn.execute("SELECT n FROM t ORDER BY n").fetchall() == [(2,), (3,)]
    assert group.stats().writes == 2
    conn.close()


def test_a_write_that_finds_the_file_locked_raises_store_unavailable_and_frees_the_writer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "stepwell.db", clock=SystemClock(), busy_timeout_ms=100)
    store.migrate()
    other = sqlite3.connect(tmp_path / "stepwell.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's long write transaction
        with pytest.raises(StoreUnavailable, match="append_events: the database stayed locked"):
            store.append_events([_event("while-locked")])
        other.execute("ROLLBACK")
        assert [a.id for a in store.append_events([_event("after")])] == ["after"]
        assert {event.id for event in store.list_recent_events(limit=10)} == {"after"}
    finally:
        other.close()
        store.close()


def test_group_commit_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="limit 0 must be >= 1"):
        GroupCommit(sqlite3.connect(":memory:"), 1.0, limit=0)


def _wait_until(condition: Callable[[], bool]) -> None:
    """Threads block on a lock: there is no signal to wait on but the count of waiters."""
    deadline = SystemClock().monotonic() + 10
    while not condition():
        assert SystemClock().monotonic() < deadline, "the writers never queued"
        threading.Event().wait(0.001)
