"""Transactional enqueue: `send`/`enqueue` inside the caller's own transaction (psycopg, SQLAlchemy).

The caller's commit makes the event and its run exist; their rollback leaves neither; Stepwell
never commits on their connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.orm import Session

import stepwell
from stepwell.errors import ConfigurationError
from stepwell.handle import FunctionHandle
from tests.conftest import database_url_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(tmp_path: Path) -> str:
    return database_url_for("postgres", tmp_path)


_HANDLES: dict[int, FunctionHandle] = {}


@pytest.fixture
def app(pg_url: str) -> Iterator[stepwell.App]:
    app = stepwell.App("outbox", database_url=pg_url)

    @app.function("welcome", trigger=stepwell.on_event("user.created"))
    def welcome(ctx: Any) -> None:
        return None

    _HANDLES[id(app)] = welcome
    app.store.migrate()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id integer PRIMARY KEY)")
    yield app
    _HANDLES.pop(id(app))
    app.close()


@pytest.fixture
def welcome(app: stepwell.App) -> FunctionHandle:
    """What `@app.function` returned for the app's function."""
    return _HANDLES[id(app)]


@pytest.fixture
def engine(pg_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


def _stored(app: stepwell.App, event_id: str) -> tuple[bool, int]:
    """(the event exists, how many runs it has), read through Stepwell's own connections."""
    record = app.store.get_event(event_id)
    return record is not None, len(app.runs(event_id=event_id))


def _users(pg_url: str) -> list[int]:
    with psycopg.connect(pg_url) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM users ORDER BY id")]


def test_psycopg_commit_keeps_the_event_and_its_run(app: stepwell.App, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO users (id) VALUES (1)")
            event_id = app.send("user.created", {"id": 1}, connection=conn)
            assert _stored(app, event_id) == (False, 0), "invisible before the caller commits"
        assert not conn.closed
    assert _stored(app, event_id) == (True, 1)
    assert _users(pg_url) == [1]


def test_psycopg_rollback_leaves_no_event_and_no_run(app: stepwell.App, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn, conn.transaction():
        conn.execute("INSERT INTO users (id) VALUES (1)")
        event_id = app.send("user.created", {"id": 1}, connection=conn)
        raise psycopg.Rollback
    assert _stored(app, event_id) == (False, 0)
    assert app.runs() == [] and _users(pg_url) == []


def test_stepwell_never_commits_the_callers_transaction(app: stepwell.App, pg_url: str) -> None:
    conn = psycopg.connect(pg_url)  # not autocommit: the send opens a transaction and leaves it open
    try:
        event_id = app.send("user.created", {"id": 1}, connection=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert _stored(app, event_id) == (False, 0)
        conn.rollback()
        assert _stored(app, event_id) == (False, 0)
    finally:
        conn.close()


def test_enqueue_through_the_function_handle_joins_the_transaction(
    app: stepwell.App, welcome: FunctionHandle, pg_url: str
) -> None:
    with psycopg.connect(pg_url) as conn:
        with conn.transaction():
            kept = welcome.enqueue({"id": 1}, connection=conn)
        with conn.transaction():
            dropped = welcome.enqueue({"id": 2}, connection=conn)
            raise psycopg.Rollback
    assert app.get_run(kept).function == "welcome"
    assert app.store.get_run(dropped) is None


def test_async_send_and_enqueue_take_the_connection_too(
    app: stepwell.App, welcome: FunctionHandle, pg_url: str
) -> None:
    async def main(conn: psycopg.Connection[Any]) -> tuple[str, str]:
        return await app.asend("user.created", {"id": 1}, connection=conn), await welcome.aenqueue(connection=conn)

    with psycopg.connect(pg_url) as conn, conn.transaction():
        event_id, run_id = asyncio.run(main(conn))
        raise psycopg.Rollback
    assert _stored(app, event_id) == (False, 0) and app.store.get_run(run_id) is None


def test_a_batch_with_a_dict_row_factory_connection(app: stepwell.App, pg_url: str) -> None:
    with psycopg.connect(pg_url, row_factory=psycopg.rows.dict_row) as conn, conn.transaction():
        ids = app.send([{"name": "user.created", "data": {"id": i}} for i in range(3)], connection=conn)
        again = app.send("user.created", {"id": 0}, id=ids[0], connection=conn)  # a duplicate, in the same txn
    assert again == ids[0]
    assert [_stored(app, event_id) for event_id in ids] == [(True, 1)] * 3


def test_sqlalchemy_connection_commit_and_rollback(app: stepwell.App, engine: sqlalchemy.Engine, pg_url: str) -> None:
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("INSERT INTO users (id) VALUES (1)"))
        kept = app.send("user.created", {"id": 1}, connection=conn)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("INSERT INTO users (id) VALUES (2)"))
        dropped = app.send("user.created", {"id": 2}, connection=conn)
        conn.rollback()
    with engine.connect() as conn:  # Stepwell's write alone begins the transaction the caller commits
        alone = app.send("user.created", {"id": 3}, connection=conn)
        conn.commit()
    assert _stored(app, kept) == (True, 1)
    assert _stored(app, dropped) == (False, 0)
    assert _stored(app, alone) == (True, 1)
    assert _users(pg_url) == [1]


def test_sqlalchemy_session_commit_and_rollback(app: stepwell.App, engine: sqlalchemy.Engine, pg_url: str) -> None:
    with Session(engine) as session:
        session.execute(sqlalchemy.text("INSERT INTO users (id) VALUES (1)"))
        kept = app.send("user.created", {"id": 1}, connection=session)
        session.commit()
    with Session(engine) as session:
        session.execute(sqlalchemy.text("INSERT INTO users (id) VALUES (2)"))
        dropped = app.send("user.created", {"id": 2}, connection=session)
        session.rollback()
    with Session(engine) as session, session.begin():
        run_id = app.enqueue("welcome", {"id": 3}, connection=session)
    assert _stored(app, kept) == (True, 1)
    assert _stored(app, dropped) == (False, 0)
    assert app.get_run(run_id).function == "welcome"
    assert _users(pg_url) == [1]


def test_something_that_is_not_a_connection_is_refused_by_name(app: stepwell.App) -> None:
    with pytest.raises(ConfigurationError, match="psycopg 3 Connection"):
        app.send("user.created", {"id": 1}, connection="postgresql://elsewhere")
    assert app.runs() == []


def test_sqlite_refuses_a_connection_and_says_why(tmp_path: Path) -> None:
    app = stepwell.App("outbox", database_url=database_url_for("sqlite", tmp_path))

    @app.function("welcome", trigger=stepwell.on_event("user.created"))
    def welcome(ctx: Any) -> None:
        return None

    try:
        with pytest.raises(ConfigurationError, match="needs the PostgreSQL store"):
            app.send("user.created", {"id": 1}, connection=object())
        with pytest.raises(ConfigurationError, match="needs the PostgreSQL store"):
            app.enqueue("welcome", connection=object())
        assert app.runs() == []
    finally:
        app.close()
