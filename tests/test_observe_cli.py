"""The terminal: runs show tells what happened, events show the disposition, top, short ids, 80 columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner
from rich.console import Console

import stepwell
from stepwell.cli import main
from stepwell.cli.observe import banner, safe_url
from stepwell.render import dead_letters_table, make_console, run_timeline, runs_table
from stepwell.testing import TestEnv

app = stepwell.App("cli-observe", database_url="sqlite:///ignored.db")


@app.function("flaky-import", trigger=stepwell.on_event("import.requested"), retries=1)
def flaky_import(ctx: stepwell.Context[Any]) -> None:
    ctx.log.info("importing \x1b[31m%s\nnext", ctx.event.data["file"])
    ctx.step.run("parse", _parse)


@app.function("nightly", trigger=stepwell.cron("0 3 * * *"))
def nightly(ctx: stepwell.Context[Any]) -> None:
    return None


def _parse() -> None:
    raise NameError("name 'undefined_thing' is not defined")


def _failed_run(tmp_path: Path) -> tuple[str, str, str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with TestEnv(app, database_url=url) as env:
        event_id = env.send("import.requested", {"file": "a.csv"})
        env.run_until_idle()
        [run] = env.app.runs(event_id=event_id)
    return url, run.id, event_id


def test_runs_show_accepts_a_prefix_and_tells_what_happened(tmp_path: Path) -> None:
    url, run_id, _ = _failed_run(tmp_path)
    result = CliRunner().invoke(main, ["runs", "show", run_id[:16], "--database-url", url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert run_id in out and 'input: import.requested {"file":"a.csv"}' in out
    assert "NameError" in out and "traceback:" in out and "_parse" in out
    assert "importing \\x1b[31ma.csv\\nnext" in out  # the stored line, escaped
    assert out.count("importing") == 1
    reader = stepwell.App("reader", database_url=url)
    console = Console(width=80, record=True)
    console.print(run_timeline(reader.get_run(run_id)))
    reader.close()
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "parse" in text and "failed" in text


def test_an_unknown_or_ambiguous_prefix_is_a_clear_error(tmp_path: Path) -> None:
    url, _, _ = _failed_run(tmp_path)
    missing = CliRunner().invoke(main, ["runs", "show", "ffff", "--database-url", url])
    assert missing.exit_code == 1 and "no run id starts with 'ffff'" in missing.output


def test_events_show_prints_the_disposition(tmp_path: Path) -> None:
    url, run_id, event_id = _failed_run(tmp_path)
    result = CliRunner().invoke(main, ["events", "show", event_id, "--database-url", url, "--json"])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.output)
    assert shown["disposition"] == "started" and shown["run_ids"] == [run_id]
    text = CliRunner().invoke(main, ["events", "show", event_id, "--database-url", url])
    assert "disposition: started" in text.output and run_id[:16] in text.output


def test_runs_ls_fits_80_columns(tmp_path: Path) -> None:
    url, run_id, _ = _failed_run(tmp_path)
    result = CliRunner().invoke(main, ["runs", "ls", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert run_id[:16] in result.output and run_id not in result.output
    reader = stepwell.App("reader", database_url=url)
    console = Console(width=80, record=True)
    console.print(runs_table(reader.runs(), reader.store.now()))
    text = console.export_text()
    reader.close()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "flaky-import" in text and "failed" in text and "NameError" in text


def test_top_once_shows_failures_and_dead_letters(tmp_path: Path) -> None:
    url, _, _ = _failed_run(tmp_path)
    result = CliRunner().invoke(main, ["top", "--once", "--database-url", url, "--window", "1e9"])
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if "flaky-import" in line]
    assert row.split()[-2:] == ["1", "1"]  # failed, dead letters


def test_dev_banner_names_the_database_and_the_triggers(tmp_path: Path) -> None:
    console = make_console()
    with console.capture() as captured:
        console.print(banner(app, f"sqlite:///{tmp_path / 'dev.db'}"))
    text = captured.get()
    assert str((tmp_path / "dev.db").resolve()) in text
    assert "flaky-import  on import.requested" in text and "nightly  cron 0 3 * * * (UTC)" in text
    assert safe_url("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert safe_url("postgresql://db/x") == "postgresql://db/x"


@app.function("napper", trigger=stepwell.on_event("nap.requested"))
def napper(ctx: stepwell.Context[Any]) -> None:
    ctx.step.run("first", lambda: 1)
    ctx.step.sleep("nap", "1h")


def test_runs_show_names_the_current_step_and_top_counts_the_ready_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    start = datetime.now(UTC) - timedelta(minutes=1)  # `top` reads with the real clock: due by now
    with TestEnv(app, database_url=url, start=start) as env:
        event_id = env.send("nap.requested", {})
        env.run_until_idle(skip_time=False)
        [run] = env.app.runs(event_id=event_id)
        env.send("nap.requested", {})  # a second one, never claimed: ready
    shown = CliRunner().invoke(main, ["runs", "show", run.id, "--database-url", url])
    assert shown.exit_code == 0, shown.output
    assert "current step: nap (sleeping)" in shown.output
    top = CliRunner().invoke(main, ["top", "--once", "--database-url", url])
    [row] = [line for line in top.output.splitlines() if "napper" in line]
    assert row.split()[2] == "1"  # ready


def test_dlq_lists_short_ids_in_80_columns_and_redrives_by_prefix(tmp_path: Path) -> None:
    url, run_id, _ = _failed_run(tmp_path)
    reader = stepwell.App("reader", database_url=url)
    console = Console(width=80, record=True)
    console.print(dead_letters_table(reader.dead_letters(), reader.store.now()))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert run_id[:16] in text and "flaky-import" in text and "retries_exhausted" in text
    redriven = CliRunner().invoke(main, ["dlq", "redrive", run_id[:16], "--database-url", url])
    assert redriven.exit_code == 0 and "redriven 1 run(s)" in redriven.output, redriven.output
    assert reader.get_run(run_id).status == stepwell.RunStatus.QUEUED
    reader.close()
