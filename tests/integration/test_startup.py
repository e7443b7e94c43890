"""A worker started while its database is unreachable waits for it instead of exiting."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_waits_for_an_unreachable_database_and_stops_cleanly(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:9/test?stepwell_pool_timeout=0.5"  # port 9: nothing listens there
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stepwell",
                "worker",
                "tests.integration.integration_app:app",
                "--database-url",
                url,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(4)
        assert worker.poll() is None, log.read_text()
        assert "the database is unavailable" in log.read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
