"""Bad input found by an operator's run (issue 12): each refused cleanly, naming what was wrong,
with nothing written, on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import stepwell
from stepwell.cli import main
from stepwell.clock import VirtualClock
from stepwell.errors import ConfigurationError, EventRejected
from stepwell.model.event import MAX_BATCH_EVENTS
from stepwell.model.jsonvalue import MAX_NESTING
from stepwell.model.records import RunStatus, StepStatus
from stepwell.store.base import Store
from tests.conftest import EnvFactory


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


BAD_DATA = [
    pytest.param({"a": ["ok", "x\ud800"]}, "$.a[1]", "lone surrogate", id="surrogate-value"),
    pytest.param({"k": {"\udc00": 1}}, "$.k key", "lone surrogate", id="surrogate-key"),
    pytest.param({"deep": nested(253)}, "$.deep[0]", f"deeper than {MAX_NESTING}", id="depth-254"),
    pytest.param({"deep": nested(254)}, "$.deep[0]", f"deeper than {MAX_NESTING}", id="depth-255"),
]


def app_with_one_function() -> tuple[stepwell.App, list[str]]:
    app = stepwell.App("t")
    calls: list[str] = []

    @app.function("f", trigger=stepwell.on_event("go"), retries=3)
    def f(ctx: stepwell.Context) -> Any:
        return ctx.step.run("make-value", lambda: calls.append("body") or ctx.event.data.get("echo"))

    return app, calls


@pytest.mark.parametrize(("data", "path", "reason"), BAD_DATA)
def test_unencodable_event_data_is_rejected_naming_the_path(
    data: Any, path: str, reason: str, test_env: EnvFactory
) -> None:
    app, _ = app_with_one_function()
    with test_env(app):
        with pytest.raises(EventRejected) as refused:
            app.send("go", data)
        assert path in str(refused.value) and reason in str(refused.value)
        with pytest.raises(EventRejected, match="event #1"):
            app.send([{"name": "go", "data": {}}, {"name": "go", "data": data}])
        assert app.runs() == []  # every valid event starts a run: none was written


def test_nesting_at_the_limit_is_accepted(test_env: EnvFactory) -> None:
    app, _ = app_with_one_function()
    with test_env(app) as env:
        env.send("go", {"deep": nested(MAX_NESTING - 2)})  # the data dict, the list under it, ...
        env.run_until_idle()
        [run] = app.runs()
        assert run.status == RunStatus.COMPLETED


@pytest.mark.parametrize(
    ("value", "path"),
    [(["x\ud800"], "$[0]"), ({"\udc00": 1}, "$ key"), (nested(MAX_NESTING + 1), "...")],
)
def test_a_step_returning_an_unencodable_value_fails_for_good_naming_step_type_and_path(
    value: Any, path: str, test_env: EnvFactory
) -> None:
    app = stepwell.App("t")
    calls: list[int] = []

    @app.function("f", trigger=stepwell.on_event("go"), retries=3)
    def f(ctx: stepwell.Context) -> None:
        ctx.step.run("make-value", lambda: calls.append(1) or value)

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
    assert calls == [1], "the step's body ran again: the error was treated as retriable"
    assert run.status == RunStatus.FAILED and run.error is not None
    step = run.step("make-value")
    assert step.status == StepStatus.FAILED and step.output is None
    message = run.error.message
    assert "step 'make-value'" in message and path in message
    assert (" list " in message) if path == "..." else (" str " in message)


def test_an_over_limit_batch_is_rejected_before_anything_is_written(test_env: EnvFactory) -> None:
    app, _ = app_with_one_function()
    read: list[int] = []

    def events(count: int) -> Any:
        for n in range(count):
            read.append(n)
            yield {"name": "go", "data": {"n": n}}

    with test_env(app):
        with pytest.raises(EventRejected, match=f"at most {MAX_BATCH_EVENTS} events"):
            app.send(events(MAX_BATCH_EVENTS + 5))
        assert len(read) == MAX_BATCH_EVENTS + 1, "the batch was read past the limit"
        assert app.runs() == []
        assert len(app.send([{"name": "go"}] * MAX_BATCH_EVENTS)) == MAX_BATCH_EVENTS  # the limit itself


class HostileStr(Exception):
    def __str__(self) -> str:
        raise KeyboardInterrupt


def test_an_exception_whose_str_raises_keyboard_interrupt_still_writes_the_failed_step(test_env: EnvFactory) -> None:
    app = stepwell.App("t")

    @app.function("f", trigger=stepwell.on_event("go"), retries=0)
    def f(ctx: stepwell.Context) -> None:
        def boom() -> None:
            raise HostileStr

        ctx.step.run("boom", boom)

    with test_env(app) as env:
        env.send("go")
        env.run_until_idle()
        run = app.get_run(app.runs()[0].id)
    assert run.status == RunStatus.FAILED
    step = run.step("boom")
    assert step.status == StepStatus.FAILED and step.error is not None
    assert step.error.type.endswith("HostileStr") and "KeyboardInterrupt" in step.error.message


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"base": 0.1}, "base must be a timedelta"),
        ({"cap": 60}, "cap must be a timedelta"),
        ({"factor": "2"}, "factor must be a number"),
        ({"jitter": None}, "jitter must be a number"),
    ],
)
def test_backoff_options_of_the_wrong_type_are_a_configuration_error(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        stepwell.Backoff(**options)


APP_MODULE = """
import stepwell
app = stepwell.App("cli")

@app.function("f", trigger=stepwell.on_event("go"))
def f(ctx):
    return None
"""


@pytest.mark.parametrize("number", ["18446744073709551616", "-9223372036854775809", "1" + "0" * 40])
def test_stepwell_send_refuses_integers_beyond_64_bits(
    number: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cli_app.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["send", "go", f'{{"n": {number}}}', "--app", "cli_app:app", "--database-url", database_url]
    refused = CliRunner().invoke(main, argv)
    assert refused.exit_code == 2, refused.output
    assert "outside the 64-bit range" in refused.output and "Traceback" not in refused.output
    accepted = CliRunner().invoke(main, [*argv[:2], '{"n": 18446744073709551615}', *argv[3:]])
    assert accepted.exit_code == 0, accepted.output
    app = stepwell.App("check", database_url=database_url)
    try:
        [run] = app.runs()
        assert app.event(run.event_id).data == {"n": 2**64 - 1}  # the largest is stored exactly
    finally:
        app.close()


def test_an_event_time_with_any_valid_offset_is_stored_as_its_instant_in_utc(store: Store, clock: VirtualClock) -> None:
    """Python accepts offsets up to ±23:59, PostgreSQL only ±15:59 (found by the HTTP API's fuzzer):
    the event's time is stored in UTC, the same instant whatever offset its sender wrote."""
    app = stepwell.App("offsets", store=store, clock=clock)
    written = datetime(4803, 10, 7, 19, 36, 17, tzinfo=timezone(timedelta(hours=18, minutes=49)))
    event_id = app.send("offset.event", {}, ts=written)
    assert app.event(event_id).ts == written.astimezone(UTC)
    with pytest.raises(stepwell.EventRejected, match="out of range in UTC"):
        app.send("offset.event", {}, ts=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
