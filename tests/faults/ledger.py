"""The effect ledger: every real execution of user code, written by the test functions themselves.

A line per phase (`start` when the step's code begins, `end` when it returns), with the attempt,
its lease token and the keys the checkers group by. Written with O_APPEND and fsync'd, so what a
SIGKILLed worker executed is still counted.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.faults.history import append_line

LEDGER_ENV = "STEPWELL_FAULTS_LEDGER"


@dataclass(frozen=True, slots=True)
class Execution:
    t: float
    pid: int
    run: str
    attempt: int
    token: str | None
    step: str
    phase: str  # start | end
    key: str | None = None  # an ordering key
    seq: int | None = None  # the event's place in its key's order, as sent
    scope: str | None = None  # a concurrency limit the run counts against


def write(
    run: str,
    attempt: int,
    token: str | None,
    step: str,
    phase: str,
    *,
    key: str | None = None,
    seq: int | None = None,
    scope: str | None = None,
) -> None:
    entry = Execution(time.time(), os.getpid(), run, attempt, token, step, phase, key, seq, scope)
    append_line(Path(os.environ[LEDGER_ENV]), json.dumps(_row(entry)))


def _row(entry: Execution) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in Execution.__slots__}


def read(path: Path) -> list[Execution]:
    if not path.exists():
        return []
    return [Execution(**json.loads(line)) for line in path.read_text().splitlines() if line]
