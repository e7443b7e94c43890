"""Lifecycle log records of runs, and how they are written: rich on a terminal, JSON lines otherwise.

Levels are chosen for the hot path: `started`, `completed` and `suspended` are DEBUG (a drain of
10,000 runs/s must not format 20,000 lines/s unless asked: `stepwell dev` and `-v` ask), a retry
is INFO, a dead letter ERROR, an attempt interrupted by the store WARNING. Formatting is lazy
(`%`-style arguments, checked with isEnabledFor first). Every record carries run_id, function,
step, attempt and event_id as attributes; payloads and step outputs are never logged.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from stepwell.model.records import ErrorInfo
from stepwell.observe import scope

RUNS = logging.getLogger("stepwell.runs")
CONTEXT_FIELDS = ("run_id", "function", "step", "attempt", "event_id")
TRACEBACK_FRAMES = 3
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x1b]")
LogFormat = Literal["auto", "json", "rich"]


def escape(text: str) -> str:
    """Newlines, tabs, escape sequences and other control characters as visible escapes: a message
    from user code cannot forge a log line or repaint the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def traceback_tail(error: ErrorInfo, frames: int = TRACEBACK_FRAMES) -> list[str]:
    """The last `frames` frames of a stored traceback ("File ...", code line), without the error line."""
    lines = [line for line in error.traceback.splitlines() if line.strip(" ^~")]  # no caret markers
    starts = [i for i, line in enumerate(lines) if line.lstrip().startswith("File ")]
    if not starts:
        return []
    tail = lines[starts[-frames] if len(starts) >= frames else starts[0] :]
    frame_lines = [line for line in tail if not line.startswith(error.type) and not line.startswith(error.type + ":")]
    return frame_lines[: frames * 2 + 2]


def lifecycle(level: int, message: str, *args: object, **fields: object) -> None:
    """One lifecycle record with the context fields of the current attempt (plus `fields`)."""
    if not RUNS.isEnabledFor(level):
        return
    extra = scope.fields()
    extra.update(fields)
    RUNS.log(level, message, *args, extra=extra)


class ContextFilter(logging.Filter):
    """Adds the current attempt's fields to records that lack them (any logger, e.g. a user's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            for name, value in scope.fields().items():
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the context fields, and extras we set."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:  # always there (null outside a run): one schema for every line
            data[name] = getattr(record, name, None)
        for name in ("error", "delay", "duration_ms", "traceback"):
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TerminalFormatter(logging.Formatter):
    """For the rich handler: the message escaped, context in brackets, traceback frames indented."""

    def format(self, record: logging.LogRecord) -> str:
        text = escape(record.getMessage())
        run_id = getattr(record, "run_id", None)
        if run_id:
            where = f"{getattr(record, 'function', '')} {str(run_id)[:16]}"
            step = getattr(record, "step", None)
            if step:
                where += f" {step}"
            text = f"[{escape(where)}] {text}"
        frames = getattr(record, "traceback", None)
        if frames:
            text += "".join(f"\n    {escape(str(line).strip())}" for line in frames)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(log_format: LogFormat = "auto", *, verbose: bool = False, runs_debug: bool = False) -> None:
    """Root logging for the CLI: rich on a terminal, JSON lines when piped (or as asked).

    `runs_debug` shows every run's start and completion (`stepwell dev`); `verbose` shows DEBUG of everything.
    """
    if log_format == "auto":
        log_format = "rich" if sys.stderr.isatty() else "json"
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False, highlighter=None)
        handler.setFormatter(TerminalFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    RUNS.setLevel(logging.DEBUG if verbose or runs_debug else logging.NOTSET)
