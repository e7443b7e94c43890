"""Bad input gets a clear error that names what was wrong, and changes nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

import stepwell
from stepwell.errors import ConfigurationError, EventRejected, InvalidDuration, UnknownFunction
from stepwell.model.durations import parse_duration
from stepwell.model.records import Disposition, RunStatus
from stepwell.testing import TestEnv


@dataclass
class Custom:
    x: int


def _circular() -> list[object]:
    value: list[object] = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    ("value", "type_name", "path"),
    [
        (datetime(2030, 1, 1, tzinfo=UTC), "datetime", "$"),
        ({"tags": {1, 2}}, "set", "$.tags"),
        ({"blob": [b"\x00"]}, "bytes", "$.blob[0]"),
        (Decimal("1.5"), "Decimal", "$"),
        ({"obj": Custom(1)}, "Custom", "$.obj"),
        ({"n": math.nan}, "float", "$.n"),
        ({"n": math.inf}, "float", "$.n"),
        (_circular(), "list", "$[0]"),
        ({1: "int key"}, "int", "$ key 1"),
        (2**70, "int", "$"),
    ],
)
def test_a_step_result_that_is_not_json_fails_the_step_naming_step_type_and_path(
    value: object, type_name: str, path: str
) -> None:
    app = stepwell.App("t")

    @app.function("f", trigger=stepwell.on_event("go"), retries=3)
    def f(ctx: stepwell.Context) -> None:
        ctx.step.run("make-value", lambda: value)

    with TestEnv(app) as env:
        env.send("go")
        attempts = env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
        assert attempts == 1, "a non-serializable result is not retried"
        assert run.status == RunStatus.FAILED
        assert run.error is not None
        assert "'make-value'" in run.error.message and type_name in run.error.message and path in run.error.message
        step = run.step("make-value")
        assert step.output is None


def test_a_function_return_value_that_is_not_json_fails_the_run() -> None:
    app = stepwell.App("t")

    @app.function("f", trigger=stepwell.on_event("go"))
    def f(ctx: stepwell.Context) -> object:
        return {"when": datetime(2030, 1, 1, tzinfo=UTC)}

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.runs()[0]
        assert run.status == RunStatus.FAILED and run.output is None
        assert run.error is not None and "function 'f'" in run.error.message and "$.when" in run.error.message


def test_tuples_are_stored_as_lists_and_first_run_sees_what_replay_sees() -> None:
    app = stepwell.App("t")
    seen: list[object] = []

    @app.function("f", trigger=stepwell.on_event("go"))
    def f(ctx: stepwell.Context) -> None:
        value = ctx.step.run("pair", lambda: (1, 2))
        ctx.step.run("record", lambda: seen.append(value))
        ctx.step.sleep("nap", "1s")
        seen.append(value)

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        assert seen == [[1, 2], [1, 2]]


def test_an_oversized_event_is_refused_and_nothing_is_stored() -> None:
    app = stepwell.App("t", max_event_bytes=1000)

    @app.function("f", trigger=stepwell.on_event("big"))
    def f(ctx: stepwell.Context) -> None:
        return None

    with TestEnv(app) as env:
        with pytest.raises(EventRejected, match="over the limit of 1000 bytes"):
            env.send("big", {"blob": "x" * 1000})
        assert app.runs() == []
        event_id = env.send("big", {"blob": "x" * (1000 - len('{"blob":""}'))})
        assert app.event(event_id).disposition == Disposition.STARTED


def test_a_batch_with_one_bad_event_writes_nothing() -> None:
    app = stepwell.App("t")

    @app.function("f", trigger=stepwell.on_event("ok"))
    def f(ctx: stepwell.Context) -> None:
        return None

    with TestEnv(app) as env:
        with pytest.raises(EventRejected, match="event #2"):
            env.app.send([{"name": "ok", "data": {}}, {"name": "ok"}, {"name": "ok", "data": {"x": {1, 2}}}])
        assert app.runs() == []
        with pytest.raises(EventRejected, match="event #1"):
            env.app.send([{"name": "ok"}, {"name": "bad name!"}])
        with pytest.raises(EventRejected, match="'name'"):
            env.app.send([{"data": {}}])
        assert app.runs() == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "not a valid name"),
        ({"name": "x" * 201}, "not a valid name"),
        ({"name": "ok", "id": ""}, "id"),
        ({"name": "ok", "id": "a\nb"}, "id"),
        ({"name": "ok", "ts": datetime(2030, 1, 1)}, "timezone-aware"),
    ],
)
def test_malformed_events_are_refused(kwargs: dict[str, object], match: str) -> None:
    app = stepwell.App("t")
    with TestEnv(app) as env:
        name = kwargs.pop("name")
        with pytest.raises(EventRejected, match=match):
            env.app.send(name, {}, **kwargs)  # type: ignore[arg-type]
        assert app.runs() == []


def test_a_repeated_event_id_is_accepted_and_starts_nothing_twice() -> None:
    app = stepwell.App("t")

    @app.function("f", trigger=stepwell.on_event("pay"))
    def f(ctx: stepwell.Context) -> None:
        return None

    with TestEnv(app) as env:
        first = env.send("pay", {"amount": 5}, id="payment-42")
        second = env.send("pay", {"amount": 5}, id="payment-42")
        assert first == second == "payment-42"
        assert len(app.runs(event_id="payment-42")) == 1
        env.advance(hours=23)
        env.send("pay", {"amount": 5}, id="payment-42")
        assert len(app.runs()) == 1


def test_an_event_that_matches_no_function_is_kept_with_its_disposition() -> None:
    app = stepwell.App("t")
    with TestEnv(app) as env:
        event_id = env.send("nobody.listens", {"a": 1})
        record = app.event(event_id)
        assert record.disposition == Disposition.NO_MATCH
        assert record.run_ids == () and record.data == {"a": 1}


def test_enqueue_of_an_unknown_function_is_refused() -> None:
    app = stepwell.App("t")
    with TestEnv(app), pytest.raises(UnknownFunction, match="no function 'ghost'"):
        app.enqueue("ghost", {})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(5, 5), (0.5, 0.5), ("500ms", 0.5), ("10m", 600), ("1h30m", 5400), ("1d", 86400), ("2w", 1209600)],
)
def test_durations_are_read(value: object, seconds: float) -> None:
    assert parse_duration(value).total_seconds() == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "ten minutes", "10x", "-5s", -1, math.nan, True, None, [1]])
def test_bad_durations_are_refused_naming_the_option(value: object) -> None:
    with pytest.raises(InvalidDuration, match="my-option"):
        parse_duration(value, option="my-option")  # type: ignore[arg-type]


def test_a_bad_sleep_duration_fails_the_run_naming_the_step() -> None:
    app = stepwell.App("t")

    @app.function("f", trigger=stepwell.on_event("go"), retries=0)
    def f(ctx: stepwell.Context) -> None:
        ctx.step.sleep("nap", "forever")

    with TestEnv(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.runs()[0]
        assert run.error is not None and "step.sleep('nap')" in run.error.message


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"trigger": "order.placed"}, "not a trigger"),
        ({"on_failure": "handler"}, "on_failure"),
    ],
)
def test_invalid_options_are_refused_at_registration(options: dict[str, object], match: str) -> None:
    app = stepwell.App("t")
    with pytest.raises(ConfigurationError, match=match):
        app.function("f", **options)  # type: ignore[arg-type]


def test_names_are_checked_and_duplicates_refused() -> None:
    app = stepwell.App("t")
    with pytest.raises(ConfigurationError, match="function name"):
        app.function("bad name")
    with pytest.raises(ConfigurationError, match="on_event"):
        stepwell.on_event("")

    @app.function("once")
    def once(ctx: stepwell.Context) -> None:
        return None

    with pytest.raises(ConfigurationError, match="already registered"):
        app.function("once")(lambda ctx: None)


def test_an_unsupported_database_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="not supported"):
        stepwell.App("t", database_url="mysql://x").store  # noqa: B018


def test_a_step_output_over_the_limit_fails_the_step_and_exactly_the_limit_is_accepted() -> None:
    limit = 1000
    app = stepwell.App("t", max_output_bytes=limit)

    @app.function("sizes", trigger=stepwell.on_event("go"), retries=3)
    def sizes(ctx: stepwell.Context) -> int:
        exact = ctx.step.run("exact", lambda: "x" * (limit - 2))  # a JSON string: two quote characters
        ctx.step.run("too-big", lambda: "x" * (limit - 1))
        return len(exact)

    with TestEnv(app) as env:
        env.send("go")
        assert env.run_until_idle() == 1, "not retried"
        run = app.get_run(app.runs()[0].id)
        assert run.step("exact").output == "x" * (limit - 2)
        assert run.error is not None and "step 'too-big' returned 1001 bytes of JSON, over the limit of 1000" in str(
            run.error
        )
        assert run.step("too-big").output is None


@pytest.mark.parametrize("data", [5, "text", [1, 2], True, 1.5])
def test_send_takes_an_object_as_the_http_api_does_and_none_means_empty(data: object) -> None:
    app = stepwell.App("t")
    with TestEnv(app) as env:
        with pytest.raises(EventRejected, match=rf"event 'go' data must be an object .*got {type(data).__name__} "):
            env.app.send("go", data)
        with pytest.raises(EventRejected, match=r"event #1 'go' data must be an object"):
            env.app.send([{"name": "go", "data": {}}, {"name": "go", "data": data}])
        assert app.store.list_recent_events(limit=10) == []
        assert app.event(env.app.send("go", None)).data == {}
