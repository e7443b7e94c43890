"""A real `stepwell worker --metrics-port`: /metrics on loopback, and JSON lifecycle lines when piped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import stepwell
from tests.integration.helpers import APP_DIR, APP_TARGET, Effects, wait_until
from tests.integration.integration_app import EFFECTS_ENV

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_a_worker_serves_metrics_and_logs_why_a_run_died(
    database_url: str, client: stepwell.App, effects: Effects, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-m", "stepwell", "worker", APP_TARGET, "--database-url", database_url,
            "--metrics-port", str(port), "--poll-interval", "0.05", "--rescue-interval", "0.2"]  # fmt: skip
    env = {**os.environ, EFFECTS_ENV: str(effects.path)}
    env.pop("STEPWELL_DATABASE_URL", None)
    with log.open("wb") as sink:
        worker = subprocess.Popen(argv, cwd=APP_DIR, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        run_id = client.enqueue("always-fails", {})
        run = client.wait(run_id, timeout=30)
        assert run.status == stepwell.RunStatus.FAILED

        def scraped() -> str | None:
            try:
                text = _scrape(port)
            except OSError:
                return None
            return text if 'stepwell_dead_letters_total{function="always-fails"} 1.0' in text else None

        text = wait_until(scraped, timeout=10, what="the dead letter in /metrics")
        assert 'stepwell_runs_retried_total{function="always-fails"} 3.0' in text
        assert 'stepwell_schedule_to_start_seconds_count{function="always-fails"} 4.0' in text
        assert "stepwell_queue_depth" in text and "stepwell_queue_sampled_timestamp_seconds" in text
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    lifecycle = [r for r in records if r["logger"] == "stepwell.runs" and r.get("run_id") == run_id]
    assert [r["level"] for r in lifecycle] == ["INFO", "INFO", "INFO", "ERROR"]
    dead = lifecycle[-1]
    assert dead["message"].startswith("dead-lettered after attempt 4/4")
    assert dead["function"] == "always-fails" and dead["attempt"] == 4 and dead["step"] is None
    assert "RuntimeError" in dead["error"] and any("fail" in frame for frame in dead["traceback"])
    assert lifecycle[0]["delay"] > 0 and "failure of attempt 1" in lifecycle[0]["error"]
