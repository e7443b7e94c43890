"""Store conformance: the function registry (register_functions, list_functions, the ingest generation check).

Runs on every backend.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from stepwell.app import open_store
from stepwell.clock import VirtualClock
from stepwell.errors import ConfigurationError, RegistryChanged
from stepwell.model.definition import FunctionDefinition
from stepwell.model.flow import Concurrency, FlowOptions
from stepwell.model.retry import RetryPolicy
from stepwell.model.schedule import Cron
from stepwell.store.base import RegisteredFunction, Store
from tests.conformance.helpers import event, new_run


def definition(
    name: str, app: str = "shop", *, events: tuple[str, ...] = ("order.placed",), retries: int = 3
) -> FunctionDefinition:
    return FunctionDefinition(app, name, events=events, retry=RetryPolicy(retries))


def rows(store: Store) -> dict[tuple[str, str], RegisteredFunction]:
    return {(row.app, row.name): row for row in store.list_functions().functions}


def test_list_functions_of_an_empty_registry_is_empty_at_generation_zero(store: Store) -> None:
    listing = store.list_functions()
    assert (listing.generation, listing.functions) == (0, ())


def test_register_functions_stores_each_definition_with_its_version(store: Store, clock: VirtualClock) -> None:
    flowed = FunctionDefinition(
        "shop", "charge", events=("order.placed",), crons=(Cron("0 3 * * *", "Europe/Paris"),),
        flow=FlowOptions(ordering_key="event.data.user", concurrency=(Concurrency(2, "event.data.shop"),)),
    )  # fmt: skip
    change = store.register_functions("shop", [definition("ship"), flowed])
    assert (change.added, change.changed, change.retired, change.generation) == (("charge", "ship"), (), (), 1)
    listing = store.list_functions()
    assert listing.generation == 1
    stored = rows(store)
    assert set(stored) == {("shop", "charge"), ("shop", "ship")}
    charge = stored[("shop", "charge")]
    assert charge.version == flowed.version
    assert FunctionDefinition.from_json(charge.definition) == flowed
    assert (charge.registered_at, charge.updated_at, charge.retired_at) == (clock.now(), clock.now(), None)


def test_register_functions_again_unchanged_changes_nothing(store: Store, clock: VirtualClock) -> None:
    store.register_functions("shop", [definition("ship")])
    before = rows(store)
    clock.advance(minutes=5)
    change = store.register_functions("shop", [definition("ship")])
    assert not change.changed_anything
    assert change.generation == 1
    assert rows(store) == before, "an unchanged registration writes nothing"


def test_register_functions_replaces_a_changed_definition(store: Store, clock: VirtualClock) -> None:
    first = store.register_functions("shop", [definition("ship", retries=3)])
    clock.advance(minutes=5)
    change = store.register_functions("shop", [definition("ship", retries=5)])
    assert change.changed == ("ship",) and change.generation == first.generation + 1
    row = rows(store)[("shop", "ship")]
    assert row.version == definition("ship", retries=5).version
    assert (row.registered_at, row.updated_at) == (clock.now() - timedelta(minutes=5), clock.now())


def test_register_functions_retires_what_the_app_no_longer_defines(store: Store, clock: VirtualClock) -> None:
    store.register_functions("shop", [definition("ship"), definition("bill")])
    clock.advance(minutes=1)
    change = store.register_functions("shop", [definition("ship")])
    assert change.retired == ("bill",)
    assert rows(store)[("shop", "bill")].retired_at == clock.now()
    assert rows(store)[("shop", "ship")].retired_at is None
    clock.advance(minutes=1)
    again = store.register_functions("shop", [definition("ship"), definition("bill")])
    assert again.added == ("bill",), "a retired function registered again is served again"
    assert rows(store)[("shop", "bill")].retired_at is None


def test_register_functions_leaves_other_apps_alone(store: Store) -> None:
    store.register_functions("shop", [definition("ship")])
    store.register_functions("mail", [definition("welcome", "mail", events=("user.created",))])
    change = store.register_functions("shop", [])
    assert change.retired == ("ship",)
    assert rows(store)[("mail", "welcome")].retired_at is None


def test_register_functions_moves_a_name_another_app_serves(store: Store) -> None:
    store.register_functions("shop", [definition("notify")])
    change = store.register_functions("mail", [definition("notify", "mail")])
    assert change.moved == (("notify", "shop"),) and change.added == ("notify",)
    stored = rows(store)
    assert stored[("shop", "notify")].retired_at is not None
    assert stored[("mail", "notify")].retired_at is None


def test_register_functions_refuses_a_definition_of_another_app(store: Store) -> None:
    with pytest.raises(ConfigurationError, match="belongs to app"):
        store.register_functions("shop", [definition("ship", "mail")])
    with pytest.raises(ConfigurationError, match="listed twice"):
        store.register_functions("shop", [definition("ship"), definition("ship")])
    assert store.list_functions().functions == ()


def test_register_functions_at_once_from_many_stores_bumps_the_generation_once(
    database_url: str, clock: VirtualClock
) -> None:
    store = open_store(database_url, clock)
    store.migrate()
    others = [open_store(database_url, clock) for _ in range(6)]
    definitions = [definition("ship"), definition("bill", events=("order.paid",))]
    barrier = threading.Barrier(len(others))
    changes, errors = [], []

    def register(other: Store) -> None:
        barrier.wait()
        try:
            changes.append(other.register_functions("shop", definitions))
        except Exception as err:  # noqa: BLE001 - the test reports any failure
            errors.append(err)

    threads = [threading.Thread(target=register, args=(other,)) for other in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in others:
        other.close()
    assert errors == []
    assert sum(change.changed_anything for change in changes) == 1
    assert store.list_functions().generation == 1
    assert set(rows(store)) == {("shop", "ship"), ("shop", "bill")}
    store.close()


def test_append_events_refuses_a_stale_registry_generation_and_writes_nothing(
    store: Store, clock: VirtualClock
) -> None:
    now = clock.now()
    store.register_functions("shop", [definition("ship")])
    stale = event(at=now, runs=(new_run("ship", at=now),))
    with pytest.raises(RegistryChanged) as raised:
        store.append_events([stale], registry_generation=0)
    assert raised.value.generation == 1
    assert store.get_event(stale.id) is None
    [accepted] = store.append_events([stale], registry_generation=1)
    assert not accepted.duplicate and len(accepted.run_ids) == 1
