"""Two services on one database: a producer that imports none of the consumers' code.

Run the demo (a temporary SQLite file):   python -m examples.two_services
Run the consumers as workers instead:     stepwell worker examples.two_services:shop
                                          stepwell worker examples.two_services:mail
and send from anywhere:                   stepwell send order.placed '{"order": 1, "customer": "ada"}'

`shop` and `mail` are two consumer apps (two services, say) that register their functions in the
database's function registry. `checkout` defines no function: what it sends starts exactly the runs
that the consumers define, of both apps, with their keys evaluated from the stored definitions.
Then `shop` is redeployed without `invoice`: events stop starting it, and its queued run says why.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import stepwell
from stepwell.testing import TestEnv

shop = stepwell.App("shop")
mail = stepwell.App("mail")


@shop.function("ship", trigger=stepwell.on_event("order.placed"), ordering_key="event.data.customer")
def ship(ctx: stepwell.Context[Any]) -> str:
    return ctx.step.run("label", lambda: f"parcel for {ctx.event.data['customer']}")


@shop.function("invoice", trigger=stepwell.on_event("order.placed"))
def invoice(ctx: stepwell.Context[Any]) -> int:
    return int(ctx.event.data["order"])


@mail.function("confirm", trigger=stepwell.on_event("order.placed"), if_="has(event.data.email)")
def confirm(ctx: stepwell.Context[Any]) -> str:
    return f"mailed {ctx.event.data['email']}"


def demo(database_url: str | None = None) -> dict[str, list[str]]:
    """Returns, per event sent, the functions whose runs it started."""
    url = database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'services.db'}"
    for consumer in (shop, mail):
        consumer.use_database(url)
        consumer.register()  # what `stepwell worker` does at start
    checkout = stepwell.App("checkout", database_url=url)  # no functions: routes from the registry
    started: dict[str, list[str]] = {}
    for order, data in enumerate([{"customer": "ada", "email": "ada@example.org"}, {"customer": "bob"}], 1):
        event_id = checkout.send("order.placed", {"order": order, **data})
        started[f"order {order}"] = sorted(run.function for run in checkout.runs(event_id=event_id))
    with TestEnv(shop, database_url=url) as env:  # run shop's runs here, as its worker would
        env.run_until_idle()
    redeployed = stepwell.App("shop", database_url=url)
    redeployed.function("ship", trigger=stepwell.on_event("order.placed"), ordering_key="event.data.customer")(ship)
    print("redeploy without invoice:", redeployed.register().retired)
    event_id = checkout.send("order.placed", {"order": 3, "customer": "cy"})
    started["order 3"] = sorted(run.function for run in checkout.runs(event_id=event_id))
    for name, functions in started.items():
        print(f"{name}: started {', '.join(functions)}")
    for run in checkout.runs(function="confirm"):
        print(f"confirm run {run.id}: {run.status.value}, {run.waiting_reason or 'mail has no worker in this demo'}")
    for consumer in (shop, mail, checkout, redeployed):
        consumer.close()
    return started


if __name__ == "__main__":
    demo()
