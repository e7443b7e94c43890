"""The operation history (Jepsen's method): every client call logged as invoke, then ok, fail or unknown.

`ok`: the call returned, so its effect must be durable. `fail`: the call was refused before
anything was written (bad input), so its effect must be absent. `unknown`: the call raised
while the store was away (a dropped connection, a crash during commit): the effect may or may
not exist, and the checkers accept both, but never twice.

Each op is one JSON line, appended and fsync'd, so a history survives the crash of its writer.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from stepwell.errors import EventRejected, StoreError, StoreFull, StoreUnavailable

T = TypeVar("T")
DEFINITE_FAILURES: tuple[type[BaseException], ...] = (EventRejected, StoreFull)  # said: nothing stored
INDEFINITE_FAILURES: tuple[type[BaseException], ...] = (StoreUnavailable, StoreError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Op:
    process: str
    index: int  # pairs an invoke with its completion
    type: str  # invoke | ok | fail | unknown
    f: str  # the call: send, enqueue, ...
    value: Any  # what was asked (invoke) or answered (ok); for send, the event id chosen by the client
    time: float
    error: str | None = None


class History:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._next = 0

    def call(self, process: str, f: str, value: Any, fn: Callable[[], T]) -> T | None:
        """Run `fn`, logging invoke and its completion; None when it failed (definitely or not)."""
        with self._lock:
            index = self._next
            self._next += 1
        self._append(Op(process, index, "invoke", f, value, time.time()))
        try:
            result = fn()
        except DEFINITE_FAILURES as error:
            self._append(Op(process, index, "fail", f, value, time.time(), f"{type(error).__name__}: {error}"))
            return None
        except INDEFINITE_FAILURES as error:
            self._append(Op(process, index, "unknown", f, value, time.time(), f"{type(error).__name__}: {error}"))
            return None
        self._append(Op(process, index, "ok", f, value, time.time()))
        return result

    def ops(self) -> list[Op]:
        if not self.path.exists():
            return []
        return [Op(**json.loads(line)) for line in self.path.read_text().splitlines() if line]

    def completed(self, f: str, kind: str) -> set[Any]:
        """Values of the `f` calls that completed as `kind` (ok, fail, unknown)."""
        return {op.value for op in self.ops() if op.f == f and op.type == kind}

    def invoked_without_completion(self, f: str) -> set[Any]:
        """Calls whose process crashed before logging a completion: as good as unknown."""
        ops = self.ops()
        done = {(op.process, op.index) for op in ops if op.type != "invoke"}
        return {op.value for op in ops if op.f == f and op.type == "invoke" and (op.process, op.index) not in done}

    def _append(self, op: Op) -> None:
        append_line(self.path, json.dumps(asdict(op)))


def append_line(path: Path, line: str) -> None:
    """One O_APPEND write and an fsync: lines from many processes never interleave or vanish."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
