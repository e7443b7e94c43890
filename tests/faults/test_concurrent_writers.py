"""Concurrent writers on the same rows (RELIABILITY 16, 22).

16: two redrives of the same dead letters at once, while new work arrives: each entry is
redriven once, by exactly one of the two calls (both stores).
22: twenty transactions insert events with the same idempotency key at once and the first one
rolls back: exactly one run exists (PostgreSQL, where producers write inside their own
transactions with `connection=`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import stepwell
from stepwell.testing import TestEnv
from tests.conftest import database_url_for

DEAD = 300
WRITERS = 20


def test_two_concurrent_redrives_of_the_same_dead_letters_redrive_each_once(database_url: str) -> None:
    app = stepwell.App("redrives")

    @app.function("fails", trigger=stepwell.on_event("fail"), retries=0)
    def fails(ctx: stepwell.Context[Any]) -> None:
        raise RuntimeError("always")

    @app.function("other", trigger=stepwell.on_event("other"))
    def other(ctx: stepwell.Context[Any]) -> None:
        return None

    with TestEnv(app, database_url=database_url) as env:
        app.send([{"name": "fail", "data": {"n": n}} for n in range(DEAD)])
        env.run_until_idle()
        assert len(app.dead_letters(function="fails", limit=DEAD + 1)) == DEAD
        results: list[list[str]] = []
        start = threading.Barrier(3)

        def redrive() -> None:
            start.wait()
            results.append(app.redrive(function="fails"))

        def new_work() -> None:
            start.wait()
            for n in range(50):
                app.send("other", {"n": n})

        threads = [
            threading.Thread(target=redrive),
            threading.Thread(target=redrive),
            threading.Thread(target=new_work),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        first, second = results
        assert not set(first) & set(second), "a dead letter was redriven by both calls"
        assert len(first) + len(second) == DEAD
        assert len(set(first) | set(second)) == DEAD
        assert app.redrive(function="fails") == []  # and never again
        assert len(app.runs(function="other", limit=100)) == 50


@pytest.mark.postgres
def test_twenty_transactions_with_one_idempotency_key_and_the_first_rolled_back_make_one_run(
    tmp_path: Path,
) -> None:
    url = database_url_for("postgres", tmp_path)
    app = stepwell.App("idempotent", database_url=url)

    @app.function("pay", trigger=stepwell.on_event("pay"), idempotency="event.data.key")
    def pay(ctx: stepwell.Context[Any]) -> None:
        return None

    app.store.migrate()
    errors: list[BaseException] = []
    first_sent = threading.Event()

    def writer(index: int) -> None:
        try:
            with psycopg.connect(url) as conn:
                app.send("pay", {"key": "order-1", "writer": index}, connection=conn)
                if index == 0:
                    first_sent.set()
                    time.sleep(0.5)  # the others meet this uncommitted insert meanwhile
                    conn.rollback()
                else:
                    conn.commit()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    first = threading.Thread(target=writer, args=(0,))
    first.start()
    assert first_sent.wait(10)
    others = [threading.Thread(target=writer, args=(i,)) for i in range(1, WRITERS)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(60)
    try:
        assert errors == []
        runs = app.runs(function="pay")
        assert len(runs) == 1, f"{len(runs)} runs for one idempotency key"
    finally:
        app.close()
