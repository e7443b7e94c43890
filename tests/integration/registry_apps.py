"""Two consumer apps for the registry tests, run by real `stepwell worker` processes.

`shop` and `mail` share one database; every run appends `<function> <event id>` to the file named
by $STEPWELL_TEST_EFFECTS, so the test sees exactly which functions ran for which events. The
producers in the tests import none of this: they route from the registry the workers wrote.
"""

from __future__ import annotations

import os
from typing import Any

import stepwell

EFFECTS_ENV = "STEPWELL_TEST_EFFECTS"

shop = stepwell.App("shop")
mail = stepwell.App("mail")


def record(ctx: stepwell.Context[Any]) -> dict[str, str]:
    with open(os.environ[EFFECTS_ENV], "a") as sink:
        sink.write(f"{ctx.function} {ctx.event.id}\n")
    return {"function": ctx.function}


@shop.function(
    "ship",
    trigger=stepwell.on_event("order.placed"),
    ordering_key="event.data.customer",
    priority="event.data.rush ? 50 : 0",
    idempotency="string(event.data.order)",
)
def ship(ctx: stepwell.Context[Any]) -> dict[str, str]:
    return ctx.step.run("record", record, ctx)


@shop.function(
    "bill", trigger=stepwell.on_event("order.paid"), concurrency=stepwell.Concurrency(2, "event.data.customer")
)
def bill(ctx: stepwell.Context[Any]) -> dict[str, str]:
    return ctx.step.run("record", record, ctx)


@mail.function("notify", triggers=[stepwell.on_event("order.placed"), stepwell.on_event("user.created")])
def notify(ctx: stepwell.Context[Any]) -> dict[str, str]:
    return ctx.step.run("record", record, ctx)
