"""Named crash points, for fault-injection tests only: a no-op unless STEPWELL_CRASH_POINTS is set.

A test that must crash a process at an exact place (after a commit, before the answer) starts it
with `STEPWELL_CRASH_POINTS=name[,name...]`; the process then dies there with `os._exit`, as if
SIGKILLed: no `finally`, no `atexit`, no flush. `name@N` crashes at the Nth time the point is
reached (the first, by default). Unset, `crash_point` costs one truthiness test.

The points (kept in `POINTS`, so a typo in a test fails loudly instead of never crashing):
"""

from __future__ import annotations

import os
import threading

ENV = "STEPWELL_CRASH_POINTS"
EXIT_CODE = 86  # distinguishes a planned crash from any other exit in a test's assertions

POINTS = {
    "ingest.before_write": "events validated and runs decided, nothing written yet",
    "ingest.after_commit": "events and runs committed, before `send` returns their ids",
    "step.after_effect": "a step's function returned (its side effect happened), its result not yet stored",
    "step.after_commit": "a step's result stored, before the function goes on",
    "worker.after_claim": "runs claimed and leased, none started",
    "worker.before_settle": "outcomes decided, before the settle transaction",
    "worker.after_settle": "outcomes settled, before the worker forgets the leases",
}


def _parse(value: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in value.split(","):
        name, _, nth = item.strip().partition("@")
        if not name:
            continue
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown crash point {name!r}; the points are {', '.join(sorted(POINTS))}")
        armed[name] = int(nth) if nth else 1
    return armed


_armed = _parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Die here if this point is armed (and this is its Nth hit)."""
    if not _armed:
        return
    with _lock:
        _hits[name] = hits = _hits.get(name, 0) + 1
        if _armed.get(name) == hits:
            os.write(2, f"stepwell: crash point {name} reached (hit {hits}); exiting\n".encode())
            os._exit(EXIT_CODE)
