"""Terminal rendering for the CLI: run tables and a step timeline."""

from __future__ import annotations

import sys
from datetime import datetime

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from stepwell.model.records import DeadLetter, FanOutCounts, Run

_STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "sleeping": "blue",
    "waiting": "blue",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "errored": "red",
    "retrying": "yellow",
}


def make_console(stderr: bool = False) -> Console:
    """A console that stays readable when piped (CI logs): 140 columns instead of rich's 80."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 140)


def status_text(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


BAR = 16  # the timeline column
SHORT_ID = 16  # 12 hex digits of creation time, then 4 random: unique in practice, and a prefix


def short_id(run_id: str) -> str:
    """A run id as tables show it: a prefix that `runs show` accepts (child ids are shown whole)."""
    return run_id[:SHORT_ID] if len(run_id) == 32 else run_id


def runs_table(runs: list[Run], now: datetime | None = None) -> Table:
    """Fits 80 columns: short ids, the age instead of a timestamp, the error cut to the space left."""
    table = Table(title=f"{len(runs)} run(s)", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("id", no_wrap=True, min_width=SHORT_ID)
    table.add_column("function", overflow="ellipsis", no_wrap=True, min_width=12, max_width=16)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("try", no_wrap=True, justify="right", min_width=3)
    table.add_column("age", no_wrap=True, justify="right", min_width=3)
    table.add_column("took", no_wrap=True, justify="right", min_width=8)
    table.add_column("error", overflow="ellipsis", no_wrap=True)
    for run in runs:
        age_text = "" if now is None else age((now - run.created_at).total_seconds())
        table.add_row(
            short_id(run.id),
            run.function,
            status_text(run.status.value),
            f"{run.attempt}/{run.max_attempts}",
            age_text,
            _took(run.started_at, run.ended_at),
            str(run.error or ""),
        )
    return table


def age(seconds: float) -> str:
    for limit, unit, size in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{max(seconds, 0) / size:.0f}{unit}"
    return f"{seconds / 86400:.0f}d"


def progress_bar(counts: FanOutCounts, width: int = 30) -> Text:
    """completed ▇ failed ▇ running ▇ queued ░, in proportion to the fan-out's total."""
    total = counts.total or max(counts.created, 1)
    text = Text()
    for amount, char, style in (
        (counts.completed, "█", "green"),
        (counts.failed + counts.cancelled, "█", "red"),
        (counts.running, "█", "yellow"),
        (counts.queued, "░", "cyan"),
    ):
        text.append(char * round(width * amount / total), style=style)
    return text


def fan_out_line(counts: FanOutCounts) -> str:
    total = "creating" if counts.total is None else f"{counts.finished}/{counts.total}"
    return (
        f"{total} finished · {counts.completed} completed · {counts.failed} failed · "
        f"{counts.running} running · {counts.queued} queued"
    )


def run_timeline(run: Run, fan_outs: dict[str, FanOutCounts] | None = None) -> Table:
    """Steps in order, with a bar placing each one in the run's span; fits 80 columns (details are
    cut there: `runs show` prints errors and the traceback in full below the table)."""
    table = Table(
        title=f"run {run.id} · {run.function} · {run.status.value} · attempt {run.attempt}/{run.max_attempts}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title_justify="left",
    )
    table.add_column("step", overflow="ellipsis", no_wrap=True, max_width=24)
    table.add_column("status", no_wrap=True, min_width=9)
    table.add_column("tries", no_wrap=True, justify="right", min_width=5)
    table.add_column("took", no_wrap=True, justify="right", min_width=8)
    table.add_column("timeline", no_wrap=True, width=BAR)
    table.add_column("output / error", overflow="ellipsis", no_wrap=True, min_width=8)
    starts = [s.started_at for s in run.steps if s.started_at]
    start = min(starts) if starts else (run.started_at or run.created_at)
    end = max([run.ended_at or start] + [s.ended_at or s.started_at or start for s in run.steps])
    span = max((end - start).total_seconds(), 1e-6)
    for step in run.steps:
        begin = ((step.started_at or start) - start).total_seconds() / span
        finish = ((step.ended_at or step.started_at or start) - start).total_seconds() / span
        width = BAR
        left = int(begin * width)
        size = max(1, int((finish - begin) * width))
        bar = Text(" " * left + "█" * min(size, width - left), style=_STATUS_STYLE.get(step.status.value, ""))
        if fan_outs and step.id in fan_outs:
            bar = progress_bar(fan_outs[step.id], width)
        if step.error:
            detail = str(step.error)
        elif fan_outs and step.id in fan_outs:
            detail = fan_out_line(fan_outs[step.id])
        elif step.wake_at and step.status in ("sleeping", "waiting"):
            detail = f"until {_when(step.wake_at)}"
        else:
            detail = _short(step.output)
        table.add_row(
            step.id,
            status_text(step.status.value),
            str(step.attempts),
            _took(step.started_at, step.ended_at),
            bar,
            detail,
        )
    return table


def dead_letters_table(entries: list[DeadLetter], now: datetime | None = None) -> Table:
    """Fits 80 columns, as runs_table does: short ids, the error cut to the space left."""
    table = Table(title=f"{len(entries)} dead letter(s)", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("run_id", no_wrap=True, min_width=SHORT_ID)
    table.add_column("function", overflow="ellipsis", no_wrap=True, min_width=12, max_width=16)
    table.add_column("reason", no_wrap=True, min_width=17)
    table.add_column("tries", no_wrap=True, justify="right", min_width=5)
    table.add_column("age", no_wrap=True, justify="right", min_width=3)
    table.add_column("error", overflow="ellipsis", no_wrap=True)
    for entry in entries:
        table.add_row(
            short_id(entry.run_id),
            entry.function,
            entry.reason.value,
            str(entry.attempts),
            "" if now is None else age((now - entry.failed_at).total_seconds()),
            str(entry.error),
        )
    return table


def _short(value: object, limit: int = 80) -> str:
    text = "" if value is None else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
