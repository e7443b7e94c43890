"""One request as a route sees it: the App, the limits, the checked body, and a way to call the App
off the event loop (its methods block on the store) with back-pressure on writes.

A store call that does not return within `Limits.store_timeout` is abandoned (its thread finishes
on its own) and answered 504: a database that is frozen, or cut off without a reset, would
otherwise hold the request until TCP gives up, a quarter of an hour later. The default is above
the store's own limits (pool wait 5 s, statement timeout 30 s), so only a database that does not
answer at all reaches it. The outcome of a write is then unknown, and the answer says so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request

from stepwell.app import App
from stepwell.http.errors import ApiError
from stepwell.http.limits import Limits, parse_json, read_body

T = TypeVar("T")
RETRY_SATURATED = 1  # seconds


@dataclass(slots=True)
class Pools:
    """Shared by every request of one server: threads for store calls, slots for writes."""

    threads: anyio.CapacityLimiter
    writes: anyio.Semaphore

    @classmethod
    def sized(cls, limits: Limits) -> Pools:
        return cls(anyio.CapacityLimiter(limits.max_inflight_writes + 16), anyio.Semaphore(limits.max_inflight_writes))


@dataclass(slots=True)
class Call:
    request: Request
    app: App
    limits: Limits
    pools: Pools

    @property
    def path(self) -> dict[str, Any]:
        return self.request.path_params

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; a repeated one is refused rather than silently picking one of its values."""
        params = self.request.query_params
        for name in params:
            if len(params.getlist(name)) > 1:
                raise ApiError(400, "bad_request", f"query parameter {name!r} is given more than once", name)
        return dict(params)

    async def json(self) -> Any:
        return parse_json(self.request, await read_body(self.request, self.limits), self.limits)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a blocking App method on a worker thread, for at most `store_timeout` (then 504)."""
        with anyio.move_on_after(self.limits.store_timeout):
            return await anyio.to_thread.run_sync(
                lambda: fn(*args, **kwargs), limiter=self.pools.threads, abandon_on_cancel=True
            )
        raise ApiError(
            504, "store_timeout",
            f"the database did not answer within {self.limits.store_timeout:g} s; what this request wrote may "
            "or may not be stored: retry it (events with the same ids are accepted once)",
            retry_after=RETRY_SATURATED,
        )  # fmt: skip

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """As `read`, holding one of the server's write slots: when every slot stays busy for
        `queue_timeout`, the store is saturated and the client is told to come back (429)."""
        with anyio.move_on_after(self.limits.queue_timeout) as waited:
            await self.pools.writes.acquire()
        if waited.cancelled_caught:
            raise ApiError(
                429, "saturated", "the server is at its limit of writes in progress; retry later",
                retry_after=RETRY_SATURATED,
            )  # fmt: skip
        try:
            return await self.read(fn, *args, **kwargs)
        finally:
            self.pools.writes.release()
