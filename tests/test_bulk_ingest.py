"""Bulk send's fast paths: ids drawn for a whole batch, the JSON check done by orjson, metrics counted
once per batch. Each must give exactly what the slow path gives."""

from __future__ import annotations

import enum
import math
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stepwell
from stepwell.errors import OutputNotSerializable
from stepwell.model import jsonvalue
from stepwell.model.ids import ID_CHUNK, new_id, new_ids
from stepwell.observe import metrics
from tests.conftest import EnvFactory
from tests.observe_helpers import metric_value as value


def test_new_ids_are_unique_and_shaped_and_ordered_as_new_id() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    ids = list(islice(new_ids(now), 3 * ID_CHUNK + 7))  # past several os.urandom chunks
    assert len(set(ids)) == len(ids)
    single = new_id(now)
    assert {(len(i), i[:12]) for i in ids} == {(len(single), single[:12])}
    assert all(int(i, 16) >= 0 for i in ids)  # hex, as new_id's
    later = next(new_ids(now + timedelta(milliseconds=1)))
    assert max(ids) < later


class Colour(enum.StrEnum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


class Plain(enum.Enum):
    ONE = 1


class MyDict(dict[str, Any]):
    pass


@dataclass
class Point:
    x: int


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def checked(value: object) -> bytes | str:
    """The slow path on its own: the walk, then orjson; or the error's message."""
    try:
        return jsonvalue._checked(value, "w")
    except (OutputNotSerializable, TypeError) as err:
        return str(err)


def encoded(value: object) -> bytes | str:
    try:
        return jsonvalue.encode(value, where="w")
    except (OutputNotSerializable, TypeError) as err:
        return str(err)


TRICKY = [
    {"i": 1, "s": "x", "f": 1.5, "b": True, "n": None, "l": [1, "a", {"k": []}]},
    {"nan": math.nan}, {"inf": [math.inf]}, {"t": (1, 2)}, {"c": Colour.RED}, {"z": Size.BIG}, {"p": Plain.ONE},
    {"o": OrderedDict(a=1)}, {"m": MyDict(a=1)}, {"d": datetime(2026, 1, 1, tzinfo=UTC)}, {"u": uuid.uuid4()},
    {"pt": Point(1)}, {"big": 2**64}, {"neg": -(2**63) - 1}, {"edge": 2**64 - 1}, {1: "int key"}, {"z": -0.0},
    {"deep": nested(jsonvalue.MAX_NESTING - 1)}, {"deep": nested(jsonvalue.MAX_NESTING)},
    {"many": [{"i": i} for i in range(300)]}, {"s": "{[" * 300}, {"x\ud800": 1}, {"bytes": b"x"}, {"set": {1}},
]  # fmt: skip


@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
def test_encode_gives_what_the_checked_walk_gives(value: object) -> None:
    assert encoded(value) == checked(value)


def test_encode_refuses_a_cycle_as_the_walk_does() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    assert encoded(cycle) == checked(cycle)
    assert "circular" in str(encoded(cycle))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**65), max_value=2**65) | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.tuples(inner) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(JSONISH)
def test_encode_gives_what_the_checked_walk_gives_for_any_value(value: object) -> None:
    assert encoded(value) == checked(value)


app = stepwell.App("bulk-test")


@app.function("ok", trigger=stepwell.on_event("job.ok"))
def ok(ctx: stepwell.Context[Any]) -> None:
    return None


@app.function("also", trigger=stepwell.on_event("job.ok"))
def also(ctx: stepwell.Context[Any]) -> None:
    return None


@pytest.fixture
def registry() -> Iterator[metrics.Metrics]:
    yield metrics.install()


def test_one_batch_counts_each_event_and_run_once(registry: metrics.Metrics, test_env: EnvFactory) -> None:
    with test_env(app) as env:
        env.app.send("job.ok", {}, id="before")
        env.app.send(
            [{"name": "job.ok", "data": {"i": i}} for i in range(5)]
            + [{"name": "job.ok", "id": "twice"}, {"name": "job.ok", "id": "twice"}, {"name": "job.ok", "id": "before"}]
            + [{"name": "job.nobody"}] * 2
        )
    assert value(registry, "stepwell_events_received_total", event="job.ok", disposition="started") == 1 + 5 + 1
    assert value(registry, "stepwell_events_received_total", event="job.ok", disposition="deduplicated") == 2
    assert value(registry, "stepwell_events_received_total", event="job.nobody", disposition="no_run") == 2
    assert value(registry, "stepwell_runs_created_total", function="ok") == 7
    assert value(registry, "stepwell_runs_created_total", function="also") == 7
