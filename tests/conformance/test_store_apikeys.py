"""Store conformance: API keys are stored hashed, listed, found by id and revoked once. Every backend."""

from __future__ import annotations

from datetime import timedelta

from stepwell.clock import VirtualClock
from stepwell.model.apikeys import Scope, hash_token, new_api_key, token_key_id, token_matches
from stepwell.store.base import Store


def test_create_api_key_stores_the_hash_never_the_token(store: Store, clock: VirtualClock) -> None:
    new, token = new_api_key("ingest from billing", frozenset({Scope.INGEST}))
    created = store.create_api_key(new)
    assert (created.id, created.name, created.scopes, created.revoked_at) == (
        new.id,
        "ingest from billing",
        frozenset({Scope.INGEST}),
        None,
    )
    assert created.created_at == clock.now()
    stored = store.get_api_key(new.id)
    assert stored is not None and stored.key == created
    assert stored.token_hash == hash_token(token) and token not in stored.token_hash
    assert token_key_id(token) == new.id and token_matches(token, stored)
    assert not token_matches(token[:-1] + ("A" if token[-1] != "A" else "B"), stored)


def test_get_api_key_of_an_unknown_id_is_none(store: Store) -> None:
    assert store.get_api_key("0123456789abcdef") is None


def test_list_api_keys_oldest_first_with_scopes(store: Store, clock: VirtualClock) -> None:
    first, _ = new_api_key("one", frozenset({Scope.READ, Scope.OPERATE}))
    second, _ = new_api_key("two", frozenset({Scope.ADMIN}))
    store.create_api_key(first)
    clock.advance(seconds=1)
    store.create_api_key(second)
    listed = store.list_api_keys()
    assert [(k.name, k.scopes) for k in listed] == [
        ("one", frozenset({Scope.READ, Scope.OPERATE})),
        ("two", frozenset({Scope.ADMIN})),
    ]


def test_revoke_api_key_once_and_the_key_stops_allowing(store: Store, clock: VirtualClock) -> None:
    new, _ = new_api_key("ops", frozenset({Scope.OPERATE}))
    store.create_api_key(new)
    stored = store.get_api_key(new.id)
    assert stored is not None and stored.key.allows(Scope.READ) and not stored.key.allows(Scope.ADMIN)
    clock.advance(timedelta(minutes=5))
    assert store.revoke_api_key(new.id)
    assert not store.revoke_api_key(new.id), "a second revoke changes nothing"
    assert not store.revoke_api_key("ffffffffffffffff")
    revoked = store.get_api_key(new.id)
    assert revoked is not None and revoked.key.revoked_at == clock.now()
    assert not revoked.key.allows(Scope.OPERATE)
    assert [k.revoked_at for k in store.list_api_keys()] == [clock.now()]
