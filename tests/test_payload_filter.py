"""Reading a payload search (`data.customer_id = 42`): the path, the typed value, and the errors that
name what is wrong. The stores' matching is in the conformance suite (stepwell.testing.conformance.insight)."""

from __future__ import annotations

import pytest

from stepwell import InvalidPayloadFilter
from stepwell.model.payload import parse_payload_filter


@pytest.mark.parametrize(
    ("text", "path", "value", "kind"),
    [
        ("data.customer_id = 42", ("customer_id",), 42, "number"),
        ('event.data.order.items[0].sku = "A-1"', ("order", "items", 0, "sku"), "A-1", "text"),
        ("data.plan=gold", ("plan",), "gold", "text"),
        ("data.when = 2026-05-01", ("when",), "2026-05-01", "text"),
        ("data.paid = true", ("paid",), True, "true"),
        ("data.note = null", ("note",), None, "null"),
        ("data[1] = 4.5", (1,), 4.5, "number"),
        ("data.my key = x=y", ("my key",), "x=y", "text"),
    ],
)
def test_a_search_is_read_into_a_path_and_a_typed_value(
    text: str, path: tuple[object, ...], value: object, kind: str
) -> None:
    found = parse_payload_filter(text)
    assert (found.path, found.value, found.kind) == (path, value, kind)
    assert parse_payload_filter(found.text) == found, "the shown text reads back the same"


def test_the_store_paths_quote_every_key() -> None:
    found = parse_payload_filter("data.a-b.c[2] = 1")
    assert found.json_path == '$."a-b"."c"[2]' and found.key_path == ["a-b", "c", "2"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("customer_id = 42", "must start with 'data.'"),
        ("data.customer_id", "has no '='"),
        ("data.customer_id = ", "no value after '='"),
        ("data = 1", "names no key under data"),
        ("data.a..b = 1", "is not a key"),
        ('data.a"b = 1', "is not a key"),
        ("data[1]x = 1", "must follow a dot"),
        ("data.a = {}", "not an object or list"),
        ('data.a = "open', "is not valid JSON"),
        ("data" + ".a" * 17 + " = 1", "deeper than 16 levels"),
    ],
)
def test_a_search_that_cannot_be_read_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidPayloadFilter, match=None) as raised:
        parse_payload_filter(text)
    assert says in str(raised.value)
