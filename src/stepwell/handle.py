"""What `@app.function` returns: the user's function, plus `enqueue` to start a run directly."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from stepwell.model.function import FunctionSpec

if TYPE_CHECKING:
    from stepwell.app import App


class FunctionHandle:
    def __init__(self, app: App, spec: FunctionSpec) -> None:
        self.app = app
        self.spec = spec
        self.name = spec.name
        self.__wrapped__ = spec.handler
        self.__doc__ = spec.handler.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the handle calls the plain function (no durability): handy in unit tests."""
        return self.spec.handler(*args, **kwargs)

    def enqueue(self, data: Any = None, *, connection: object | None = None) -> str:
        """Start a run with `data` as `ctx.event.data`, without an event; returns the run id.

        `connection`: join the caller's open transaction (PostgreSQL), as in `App.send`.
        """
        return self.app.enqueue(self.name, data, connection=connection)

    async def aenqueue(self, data: Any = None, *, connection: object | None = None) -> str:
        return await asyncio.to_thread(self.enqueue, data, connection=connection)

    def __repr__(self) -> str:
        return f"<stepwell function {self.name!r}>"
