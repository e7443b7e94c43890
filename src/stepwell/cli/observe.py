"""What the terminal tells: `runs show` in full, `events show`, `top`, the `dev` banner, short run ids.

Rendering lives here (and in render.py); the data comes from App methods only.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import orjson
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from stepwell.app import App
from stepwell.cli.common import DB_HELP, console, existing_app, main
from stepwell.config import resolve_database_url
from stepwell.model.records import Run, StepStatus
from stepwell.model.schedule import Cron
from stepwell.observe.logs import escape
from stepwell.render import age, fan_out_line, run_timeline, short_id

INPUT_CHARS = 400


def resolve(app: App, run_id: str) -> str:
    """A full run id from any unique prefix of it (as git resolves commits)."""
    return app.resolve_run_id(run_id)


def show_run(app: App, run: Run) -> None:
    """The run's timeline, input, current step, waiting reason, errors with traceback, and logs."""
    fan_outs = {s.id: app.fan_out_progress(run.id, s.id) for s in run.steps if s.kind == "fan_out"}
    console.print(run_timeline(run, fan_outs))
    for step_id, counts in fan_outs.items():
        console.print(Text(f"fan-out {step_id}: ", style="bold").append(fan_out_line(counts)))
    found = app.store.get_run_input(run.id)
    if found is not None:
        name, data = found
        text = data.decode("utf-8", "replace")
        text = text if len(text) <= INPUT_CHARS else text[:INPUT_CHARS] + "…"
        console.print(Text(f"input: {name} ", style="bold").append(escape(text), style=""))
    current = _current_step(run)
    if current is not None and not run.status.is_terminal:
        console.print(Text("current step: ", style="bold").append(current))
    if run.waiting_reason:
        console.print(Text("waiting: ", style="bold").append(escape(run.waiting_reason)))
    if run.output is not None:
        console.print("output:", run.output)
    for number, error in enumerate(run.errors, 1):
        console.print(Text(f"error {number}: ", style="red").append(escape(str(error))))
    if run.error is not None and run.error.traceback:
        console.print(Text("traceback:", style="bold"))
        for frame in run.error.traceback.rstrip().splitlines()[-30:]:
            console.print(Text("  " + escape(frame)), soft_wrap=True)
    logs = app.run_logs(run.id, limit=200)
    if logs.lines or logs.dropped:
        dropped = f" ({logs.dropped} older line(s) dropped)" if logs.dropped else ""
        console.print(Text(f"logs{dropped}:", style="bold"))
        for line in logs.lines:
            where = f" [{line.step}]" if line.step else ""
            stamp = line.at.strftime("%H:%M:%S.%f")[:-3]
            console.print(Text(f"  {stamp} {line.level:<7}{where} ").append(escape(line.message)), soft_wrap=True)


def _current_step(run: Run) -> str | None:
    for step in reversed(run.steps):
        if step.status != StepStatus.COMPLETED:
            return f"{step.id} ({step.status.value})"
    return None


@main.group("events")
def events_group() -> None:
    """Inspect events and their dispositions.

    \b
    Example:
      stepwell events show EVENT_ID
    """


@events_group.command("show")
@click.argument("event_id")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def events_show(event_id: str, as_json: bool, database_url: str | None) -> None:
    """Show an event and its disposition: the runs it started, or why it started none.

    \b
    Example:
      stepwell events show 01JD9Z3K4M5N6P7Q8R9S0T1V2W --json
    """
    record = existing_app(database_url).event(event_id)
    if as_json:
        click.echo(orjson.dumps({
            "id": record.id, "name": record.name, "disposition": record.disposition.value,
            "run_ids": list(record.run_ids), "received_at": record.received_at.isoformat(),
            "skipped": [{"function": f, "reason": r, "run_id": run} for f, r, run in record.skipped],
        }))  # fmt: skip
        return
    console.print(Text(f"event {record.id} · {record.name}", style="bold"))
    console.print(f"received {record.received_at:%Y-%m-%d %H:%M:%S} · disposition: {record.disposition.value}")
    for started in record.run_ids:
        console.print(f"  started run {short_id(started)}")
    for function, reason, owner in record.skipped:
        went = f" (went to run {short_id(owner)})" if owner else ""
        console.print(f"  {function}: {reason}{went}")


@main.command()
@click.option("--interval", default=2.0, show_default=True, help="seconds between refreshes")
@click.option("--window", default=60.0, show_default=True, help="seconds of history for throughput and failures")
@click.option("--once", is_flag=True, help="print one table and exit")
@click.option("--database-url", envvar="STEPWELL_DATABASE_URL", help=DB_HELP)
def top(interval: float, window: float, once: bool, database_url: str | None) -> None:
    """A live view per function: throughput, queue depth, oldest ready age, failures, dead letters.

    \b
    Examples:
      stepwell top
      stepwell top --once --window 300
    """
    app = existing_app(database_url)
    if once:
        console.print(top_table(app, window))
        return
    with Live(top_table(app, window), console=console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(top_table(app, window))
        except KeyboardInterrupt:
            pass


def top_table(app: App, window: float) -> Table:
    store = app.store
    now = store.now()
    queues = {q.function: q for q in store.queue_gauges(now=now)}
    activity = {a.function: a for a in store.function_activity(since=now - timedelta(seconds=window), now=now)}
    capped = any(q.capped for q in queues.values())
    title = f"stepwell top · last {window:g}s · {now:%H:%M:%S}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("function", overflow="ellipsis", no_wrap=True, max_width=28)
    for column in ("done/s", "ready", "oldest", "failed", "dead"):
        table.add_column(column, justify="right", no_wrap=True)
    for name in sorted(queues.keys() | activity.keys()):
        queue, done = queues.get(name), activity.get(name)
        oldest = (
            "" if queue is None or queue.oldest_ready_at is None else age((now - queue.oldest_ready_at).total_seconds())
        )
        table.add_row(
            name,
            f"{(done.completed if done else 0) / window:.1f}",
            f"{queue.ready if queue else 0}{'+' if capped and queue else ''}",
            oldest,
            Text(str(done.failed if done else 0), style="red" if done and done.failed else ""),
            Text(str(done.dead_letters if done else 0), style="red" if done and done.dead_letters else ""),
        )
    return table


def safe_url(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def banner(app: App, database_url: str | None) -> Group:
    """`stepwell dev`: the database it uses, the functions and their triggers."""
    resolved = resolve_database_url(database_url or app.database_url)
    where = str(resolved.path.resolve()) if resolved.path is not None else safe_url(resolved.url)
    lines: list[Any] = [Text.assemble(("stepwell dev", "bold"), f" · app {app.name} · Ctrl-C to stop")]
    lines.append(Text.assemble(("database ", "bold"), where))
    for name in app.registry.names():
        spec = app.registry.get(name)
        assert spec is not None
        triggers = [
            f"cron {t.expression} ({t.tz})" if isinstance(t, Cron) else f"on {getattr(t, 'event', t)}"
            for t in spec.triggers
        ]
        lines.append(Text.assemble("  ", (name, "cyan"), f"  {', '.join(triggers) or 'enqueue / invoke only'}"))
    return Group(*lines)
