"""Lifecycle records carry their context; ctx.log lines are stored once however often a run replays."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import stepwell
from stepwell.model.records import ErrorInfo
from stepwell.observe import configure
from stepwell.observe.logs import JsonFormatter, TerminalFormatter, escape, traceback_tail
from tests.conftest import EnvFactory

app = stepwell.App("logs-test")
tries: dict[str, int] = {}


@app.function("chatty", trigger=stepwell.on_event("log.chatty"), retries=2, backoff=stepwell.Backoff(jitter=0))
def chatty(ctx: stepwell.Context[Any]) -> str:
    ctx.log.info("before any step")

    def fetch() -> int:
        ctx.log.info("fetching %d rows", 3)
        return 3

    ctx.step.run("fetch", fetch)
    ctx.log.info("between")

    def flaky() -> str:
        tries[ctx.run_id] = tries.get(ctx.run_id, 0) + 1
        ctx.log.warning("try %d", tries[ctx.run_id])
        if tries[ctx.run_id] == 1:
            raise ValueError("not yet")
        return "ok"

    ctx.step.run("flaky", flaky)
    ctx.step.sleep("pause", "1m")
    ctx.log.info("after the sleep")
    return "done"


@app.function("broken", trigger=stepwell.on_event("log.broken"), retries=1, backoff=stepwell.Backoff(jitter=0))
def broken(ctx: stepwell.Context[Any]) -> None:
    ctx.step.run("explode", _explode)


def _explode() -> None:
    raise NameError("name 'undefined_thing' is not defined\nFORGED line")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    loggers = [logging.getLogger("stepwell.runs"), logging.getLogger("stepwell.run")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_ctx_log_lines_survive_replays_without_duplicates(test_env: EnvFactory) -> None:
    with test_env(app) as env:
        event_id = env.send("log.chatty", {})
        env.run_until_idle()
        [run] = env.app.runs(event_id=event_id)
        assert run.status == stepwell.RunStatus.COMPLETED and run.attempt == 2
        stored = env.app.run_logs(env.app.resolve_run_id(run.id[:20]))
    messages = [(line.level, line.step, line.message) for line in stored.lines]
    assert messages == [
        ("INFO", None, "before any step"),
        ("INFO", "fetch", "fetching 3 rows"),
        ("INFO", None, "between"),
        ("WARNING", "flaky", "try 1"),  # attempt 1 of the step ...
        ("WARNING", "flaky", "try 2"),  # ... and its retry: two executions, two lines
        ("INFO", None, "after the sleep"),
    ]
    assert stored.dropped == 0


@pytest.fixture
def small_bounds() -> Iterator[None]:
    configure(log_lines_per_run=3, log_line_chars=40)
    yield
    configure(log_lines_per_run=1000, log_line_chars=2000)


def test_ctx_log_is_bounded_per_run_and_per_line(test_env: EnvFactory, small_bounds: None) -> None:
    bounded = stepwell.App("bounded")

    @bounded.function("many", trigger=stepwell.on_event("log.many"))
    def many(ctx: stepwell.Context[Any]) -> None:
        for number in range(5):
            ctx.log.info("line %d", number)
        ctx.log.info("x" * 100)

    with test_env(bounded) as env:
        event_id = env.send("log.many", {})
        env.run_until_idle()
        [run] = env.app.runs(event_id=event_id)
        stored = env.app.run_logs(run.id)
    assert [line.message[:6] for line in stored.lines] == ["line 3", "line 4", "x" * 6]
    assert stored.dropped == 3 and len(stored.lines[-1].message) == 40 and stored.lines[-1].message.endswith("]")


def test_lifecycle_records_carry_the_run_context(test_env: EnvFactory, captured: Capture) -> None:
    with test_env(app) as env:
        event_id = env.send("log.broken", {})
        env.run_until_idle()
        [run] = env.app.runs(event_id=event_id)
    lifecycle = [r for r in captured.records if r.name == "stepwell.runs"]
    assert [r.getMessage().split(" ")[0] for r in lifecycle] == ["started", "attempt", "started", "dead-lettered"]
    for record in lifecycle:
        assert (record.run_id, record.function, record.event_id) == (run.id, "broken", event_id)  # type: ignore[attr-defined]
    retry, dead = lifecycle[1], lifecycle[3]
    assert retry.levelno == logging.INFO and retry.attempt == 1 and retry.delay == 1.0  # type: ignore[attr-defined]
    assert "NameError" in retry.error  # type: ignore[attr-defined]
    assert dead.levelno == logging.ERROR and dead.attempt == 2  # type: ignore[attr-defined]
    assert any("_explode" in line for line in dead.traceback)  # type: ignore[attr-defined]
    terminal = TerminalFormatter().format(dead)
    assert "\\nFORGED line" in terminal and "\nFORGED" not in terminal
    assert "_explode" in terminal
    line = orjson.loads(JsonFormatter().format(dead))
    assert line["run_id"] == run.id and line["attempt"] == 2 and line["level"] == "ERROR"
    assert "\n" not in JsonFormatter().format(dead)


def test_user_records_inside_a_step_name_the_step(test_env: EnvFactory, captured: Capture) -> None:
    with test_env(app) as env:
        env.send("log.chatty", {})
        env.run_until_idle()
    [fetching] = [r for r in captured.records if r.getMessage() == "fetching 3 rows"]
    assert fetching.name == "stepwell.run.chatty"
    assert (fetching.step, fetching.function, fetching.attempt) == ("fetch", "chatty", 1)  # type: ignore[attr-defined]
    [between] = [r for r in captured.records if r.getMessage() == "between"][:1]
    assert between.step is None  # type: ignore[attr-defined]


def test_escape_and_traceback_tail() -> None:
    assert escape("a\nb\x1b[31mc\t") == "a\\nb\\x1b[31mc\\t"
    error = ErrorInfo(
        "ValueError",
        "boom",
        'Traceback (most recent call last):\n  File "a.py", line 1, in one\n    one()\n'
        '  File "b.py", line 2, in two\n    two()\n  File "c.py", line 3, in three\n    three()\n'
        '  File "d.py", line 4, in four\n    raise ValueError("boom")\nValueError: boom\n',
    )
    tail = traceback_tail(error)
    assert tail[0].strip().startswith('File "b.py"') and tail[-1].strip() == 'raise ValueError("boom")'
