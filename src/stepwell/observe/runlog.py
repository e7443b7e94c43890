"""`ctx.log`: a standard logging adapter whose lines are also stored with the run.

Replays must not store a line twice. Code outside steps runs again on every replay and logs the
same lines in the same places, so such a line is keyed by (segment = steps called before it,
attempt 0, its number within the segment): the replay's line has the stored line's key and is
ignored by the store. A step's code runs only when the step executes (never on a replay of its
memoized result), so its lines are keyed under that step's position and the current attempt: a
retried step's lines are new lines. Code that is not deterministic outside steps (logging a
random number, say) can produce lines that differ between replays: the first one stored wins.

Lines are buffered per attempt and written with the run's writes: before each step is recorded,
and with the settlement, in one transaction per settled batch (never a commit per line). Lines
of an attempt that ends without a settlement (a lost lease, a crash) are lost with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import MutableMapping
from typing import Any

from stepwell.observe import scope
from stepwell.observe.settings import SETTINGS
from stepwell.store.base import RunLogLine

STORED_LEVEL = logging.INFO
_CUT = " …[truncated]"
_pending: dict[str, list[RunLogLine]] = {}  # lines of settled-but-not-yet-written attempts, by run
_pending_lock = threading.Lock()
_loggers: dict[str, logging.Logger] = {}


class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """`ctx.log.info("fetched %d rows", n)`: a line in the process's logs and in the run's stored lines.

    Lines at INFO and above are stored (bounded per run and per line); the process's logging
    configuration decides, as for any logger, what is printed.
    """

    def __init__(self, function: str, attempt: scope.AttemptScope | None = None) -> None:
        logger = _loggers.get(function)
        if logger is None:  # getLogger takes the logging module's lock: once per function
            logger = _loggers[function] = logging.getLogger(f"stepwell.run.{function}")
        super().__init__(logger, {})
        self._attempt = attempt

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        for name, value in scope.fields().items():
            extra.setdefault(name, value)
        kwargs["extra"] = extra
        return msg, kwargs

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self._attempt is not None and level >= STORED_LEVEL:
            self._store(level, msg, args)
        if self.logger.isEnabledFor(level):
            msg, processed = self.process(msg, kwargs)
            self.logger.log(level, msg, *args, **processed)

    def _store(self, level: int, msg: object, args: tuple[object, ...]) -> None:
        attempt = self._attempt
        assert attempt is not None
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        limit = SETTINGS.log_line_chars
        if len(text) > limit:
            text = text[: max(limit - len(_CUT), 0)] + _CUT
        step = scope.STEP.get()
        key = (step.position, attempt.attempt) if step is not None else (attempt.position(), 0)
        with attempt.lock:
            seq = attempt.seqs.get(key, 0)
            attempt.seqs[key] = seq + 1
            if len(attempt.lines) >= SETTINGS.log_lines_per_attempt:
                attempt.lines.pop(0)  # oldest first, as the store does past its bound
            attempt.lines.append(
                RunLogLine(
                    attempt.run_id, key[0], key[1], seq, attempt.now(), logging.getLevelName(level), text,
                    None if step is None else step.step_id,
                )
            )  # fmt: skip


def hand_over(attempt: scope.AttemptScope) -> None:
    """The attempt was settled: its remaining lines go out with the settlement."""
    lines = attempt.take_lines()
    if lines:
        with _pending_lock:
            _pending.setdefault(attempt.run_id, []).extend(lines)


def take_pending(run_ids: list[str]) -> list[RunLogLine]:
    if not _pending:
        return []
    taken: list[RunLogLine] = []
    with _pending_lock:
        for run_id in run_ids:
            taken.extend(_pending.pop(run_id, ()))
    return taken
