"""RELIABILITY 11: hostile exceptions raised inside steps, in a real worker process."""

from __future__ import annotations

import pytest

import stepwell
from stepwell.model.records import FailureReason
from stepwell.runtime.errorinfo import MAX_MESSAGE, MAX_TRACEBACK
from tests.integration.helpers import Effects, Workers, wait_until

pytestmark = pytest.mark.slow

CASES = [
    ("hostile", "system-exit", "SystemExit", "3"),
    ("hostile", "keyboard-interrupt", "KeyboardInterrupt", ""),
    ("hostile", "huge-message", "RuntimeError", "x" * MAX_MESSAGE),
    ("hostile", "str-raises", "integration_app.StrRaises", "<str() of the exception raised ValueError>"),
    ("hostile-async", "system-exit", "SystemExit", "3"),
    ("hostile-async", "keyboard-interrupt", "KeyboardInterrupt", ""),
]


def test_hostile_exceptions_are_stored_truncated_retried_and_survived(
    workers: Workers, effects: Effects, client: stepwell.App
) -> None:
    runs = {
        client.enqueue(function, {"kind": kind}): (kind, error_type, message)
        for function, kind, error_type, message in CASES
    }
    worker = workers.start(concurrency=len(CASES), poll_interval=0.05)

    wait_until(lambda: len(client.dead_letters()) == len(runs), timeout=15, what="every run dead-lettered")
    letters = {letter.run_id: letter for letter in client.dead_letters()}
    for run_id, (kind, error_type, message) in runs.items():
        run = client.get_run(run_id)
        assert (run.status, run.attempt) == (stepwell.RunStatus.FAILED, 2), kind  # retries=1 applied
        assert [e.attempt for e in effects.of(run_id, "raise")] == [1, 2], kind
        assert [(e.type, e.step) for e in run.errors] == [(error_type, "raise")] * 2, kind
        stored = run.errors[-1]
        assert stored.message.startswith(message), kind
        assert len(stored.message) <= MAX_MESSAGE + 100, kind
        assert len(stored.traceback) <= MAX_TRACEBACK + 100, kind
        assert (letters[run_id].reason, letters[run_id].attempts) == (FailureReason.RETRIES_EXHAUSTED, 2), kind

    assert worker.alive()
    after = client.enqueue("quick")
    assert client.wait(after, timeout=10).output == {"pid": worker.pid, "attempt": 1}
