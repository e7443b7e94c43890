"""Store conformance: push endpoints (which registered functions are pushed, and where) and circuits."""

from __future__ import annotations

from datetime import timedelta

from stepwell.clock import VirtualClock
from stepwell.model.definition import FunctionDefinition
from stepwell.store.base import Store


def register(store: Store, app: str, *names: str) -> None:
    store.register_functions(app, [FunctionDefinition(app, name) for name in names])


def test_set_push_endpoints_replaces_the_apps_urls_and_push_endpoints_lists_served_ones(store: Store) -> None:
    register(store, "shop", "a", "b", "c")
    store.set_push_endpoints("shop", {"a": "https://shop/api", "b": "https://shop/api"})
    assert store.push_endpoints() == {"a": "https://shop/api", "b": "https://shop/api"}
    store.set_push_endpoints("shop", {"b": "https://new/api"})  # a is pulled again
    assert store.push_endpoints() == {"b": "https://new/api"}


def test_push_endpoints_leave_out_a_retired_function_and_keep_another_apps_urls(store: Store) -> None:
    register(store, "shop", "a", "b")
    register(store, "mail", "m")
    store.set_push_endpoints("shop", {"a": "https://shop/", "b": "https://shop/"})
    store.set_push_endpoints("mail", {"m": "https://mail/"})
    register(store, "shop", "a")  # b retired
    assert store.push_endpoints() == {"a": "https://shop/", "m": "https://mail/"}


def test_push_endpoints_are_neither_set_nor_cleared_by_a_plain_registration(store: Store) -> None:
    register(store, "shop", "a")
    store.set_push_endpoints("shop", {"a": "https://shop/"})
    register(store, "shop", "a")  # a worker of the same app starting
    assert store.push_endpoints() == {"a": "https://shop/"}


def test_set_push_circuit_opens_and_closes(store: Store, clock: VirtualClock) -> None:
    until = clock.now() + timedelta(seconds=30)
    store.set_push_circuit("https://shop/", until)
    assert store.push_circuits() == {"https://shop/": until}
    store.set_push_circuit("https://shop/", until + timedelta(seconds=5))
    assert store.push_circuits() == {"https://shop/": until + timedelta(seconds=5)}
    store.set_push_circuit("https://shop/", None)
    assert store.push_circuits() == {}


def test_push_circuits_lists_the_open_circuits_with_when_they_close(store: Store, clock: VirtualClock) -> None:
    assert store.push_circuits() == {}
    until = clock.now() + timedelta(seconds=30)
    store.set_push_circuit("https://a/", until)
    store.set_push_circuit("https://b/", until + timedelta(seconds=1))
    store.set_push_circuit("https://a/", None)
    assert store.push_circuits() == {"https://b/": until + timedelta(seconds=1)}
