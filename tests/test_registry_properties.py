"""Property-based: the runs decided from the store's registry equal the runs decided in-process.

For random function options (every flow-control option, its CEL keys, retries) and random events,
`new_run` from the app's own FunctionSpec and `new_run` from the definition stored in the registry
and read back (through the real store, on every backend) give the same run: same function, same
attempts, same priority, and every flow-control key evaluated to the same value.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stepwell
from stepwell.clock import VirtualClock
from stepwell.model.definition import FunctionDefinition, definition_of
from stepwell.model.expressions import holds
from stepwell.model.matching import event_document
from stepwell.runtime.dispatch import new_run
from stepwell.store.base import Store

NOW = datetime(2030, 1, 1, tzinfo=UTC)
KEYS = [
    "event.data.user",
    "event.data.n",
    "string(event.data.n)",
    "event.data.user + ':' + string(event.data.n)",
    "event.data.missing",
    "event.data.nested.x",
    "event.name",
]
PRIORITIES = ["event.data.n", "event.data.n * 10", "event.data.user == 'a' ? 100 : -5", "event.data.missing", "'x'"]
CONDITIONS = ["event.data.n > 0", "event.data.user == 'a'", "has(event.data.nested)", "event.data.missing == 1"]
PERIODS = ["1s", "10m", 2.5, 1, timedelta(milliseconds=1500), "1h30m"]
_apps = itertools.count()

keys = st.none() | st.sampled_from(KEYS)
periods = st.sampled_from(PERIODS)
concurrency = st.builds(stepwell.Concurrency, st.integers(1, 5), keys)
throttles = st.none() | st.builds(stepwell.Throttle, st.integers(1, 9), periods, keys, st.none() | st.integers(1, 9))
rate_limits = st.none() | st.builds(stepwell.RateLimit, st.integers(1, 9), periods, keys)
cancels = st.builds(
    stepwell.CancelOn,
    st.sampled_from(["order.cancelled", "user.gone"]),
    st.none() | st.just("data.user"),
    st.none() | st.just("async.data.n > event.data.n"),
)
values = st.none() | st.booleans() | st.integers(-1000, 1000) | st.sampled_from(["a", "b", "ü", ""])
events = st.fixed_dictionaries(
    {"user": values, "n": st.integers(-200, 200)},
    optional={"nested": st.fixed_dictionaries({"x": values}), "extra": values},
)


@st.composite
def options(draw: st.DrawFn) -> dict[str, Any]:
    gathering = draw(st.sampled_from(["none", "debounce", "batch"]))
    chosen: dict[str, Any] = {
        "retries": draw(st.integers(0, 6)),
        "concurrency": draw(st.lists(concurrency, max_size=3)),
        "throttle": draw(throttles),
        "rate_limit": draw(rate_limits),
        "priority": draw(st.none() | st.sampled_from(PRIORITIES)),
        "idempotency": draw(keys),
        "timeout": draw(st.none() | periods),
        "step_timeout": draw(st.none() | periods),
        "cancel_on": draw(st.lists(cancels, max_size=2)),
        "if_": draw(st.none() | st.sampled_from(CONDITIONS)),
    }
    if gathering == "batch":
        chosen["batch"] = stepwell.Batch(draw(st.integers(1, 50)), draw(periods), draw(keys))
    else:
        chosen["ordering_key"] = draw(keys)
        if chosen["ordering_key"] is not None:
            chosen["on_dead_letter"] = draw(st.sampled_from(["skip", "park"]))
        if gathering == "debounce":
            chosen["debounce"] = stepwell.Debounce(draw(periods), draw(keys), draw(st.none() | st.just("2h")))
    return chosen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=options(), data=events, name=st.sampled_from(["order.placed", "user.created"]))
def test_runs_from_the_registry_equal_the_runs_in_process(
    store: Store, clock: VirtualClock, chosen: dict[str, Any], data: dict[str, Any], name: str
) -> None:
    app = stepwell.App(f"app-{next(_apps)}")
    app.function("fn", trigger=stepwell.on_event(name), **chosen)(lambda ctx: None)
    spec = app.registry.get("fn")
    assert spec is not None
    definition = definition_of(app.name, spec)
    store.register_functions(app.name, [definition])
    [row] = [r for r in store.list_functions().functions if r.app == app.name]
    stored = FunctionDefinition.from_json(row.definition)
    assert stored == definition
    assert stored.version == row.version == definition.version, "the version hash survives the round trip"

    document = event_document("evt-1", name, data, NOW)
    in_process = new_run(spec, NOW, document=document)
    from_registry = new_run(stored, NOW, document=document)
    assert replace(from_registry, id="") == replace(in_process, id="")
    scope = {"event": document}
    assert stored.condition == spec.condition
    assert spec.condition is None or holds(spec.condition, scope) == holds(stored.condition or "", scope)
