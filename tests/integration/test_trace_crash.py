"""Spans across a worker crash: a worker SIGKILLed mid-step, the run finished by another worker.

The first attempt continues the producer's trace (its finished step span was exported before the
kill); the second attempt, in another process, starts a new trace linked to the producer's span.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import stepwell
from tests.integration.helpers import Effects, Workers
from tests.integration.integration_app import SPANS_ENV
from tests.observe_helpers import named, span_exporter

pytestmark = pytest.mark.slow


def test_a_crashed_attempt_and_its_rescue_keep_their_trace_links(
    workers: Workers, effects: Effects, client: stepwell.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    monkeypatch.setenv(SPANS_ENV, str(spans_file))
    exporter = span_exporter()
    run_id = client.enqueue("three-steps", {"hold": {"step-2": 1.0}})
    [enqueue] = named(exporter.get_finished_spans(), "enqueue three-steps")
    producer = enqueue.get_span_context()
    assert producer is not None

    first = workers.start(lease=2.0, rescue_interval=0.5, poll_interval=0.1)
    effects.wait_for(run_id, "step-2", pid=first.pid)
    first.kill()
    second = workers.start(lease=2.0, rescue_interval=0.5, poll_interval=0.1)
    run = client.wait(run_id, timeout=20)
    assert run.status == stepwell.RunStatus.COMPLETED and run.attempt == 2

    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    by_pid = {pid: [s for s in spans if s["pid"] == pid] for pid in (first.pid, second.pid)}
    [step_one] = [s for s in by_pid[first.pid] if s["name"] == "step step-1"]
    assert step_one["trace_id"] == producer.trace_id  # attempt 1 continued the producer's trace
    assert not [s for s in by_pid[first.pid] if s["name"] == "run three-steps"]  # killed before it ended
    [rescued] = [s for s in by_pid[second.pid] if s["name"] == "run three-steps"]
    assert rescued["attempt"] == 2 and rescued["parent"] is None
    assert rescued["trace_id"] != producer.trace_id and rescued["links"] == [producer.span_id]
    steps = {s["name"]: s for s in by_pid[second.pid] if s["name"].startswith("step ")}
    assert set(steps) == {"step step-2", "step step-3"}  # step-1 was memoized: not executed, no span
    assert all(s["parent"] == rescued["span_id"] for s in steps.values())
