"""Small builders shared by the conformance tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import orjson

from stepwell.model.ids import new_id
from stepwell.store.base import NewEvent, NewRun, Store

# Opens another store on the test's database (a fresh, empty one per test), bound to the test's
# clock and not yet migrated; the backend under test provides it as the `store_factory` fixture.
StoreFactory = Callable[[], Store]


def new_run(
    function: str = "fn", *, at: datetime, max_attempts: int = 4, on_failure: str | None = None, priority: int = 0
) -> NewRun:
    return NewRun(id=new_id(at), function=function, max_attempts=max_attempts, on_failure=on_failure, priority=priority)


def event(
    name: str = "order.placed",
    data: object = None,
    *,
    at: datetime,
    runs: tuple[NewRun, ...] = (),
    event_id: str | None = None,
) -> NewEvent:
    return NewEvent(id=event_id or new_id(at), name=name, data=orjson.dumps(data or {}), ts=None, runs=runs)
