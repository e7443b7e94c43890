"""Every tuning flag of `stepwell worker` reaches the worker, through `--processes` too.

The spawning parent passes its flags on to each child: zero values (`--prefetch 0`, `--linger 0`,
`--shutdown-timeout 0`) must travel as well, not be taken for "unset".
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.backlog_app import build_app
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.slow

FLAGS = [
    "--processes=2",
    "--concurrency=3",
    "--prefetch=0",
    "--claim-batch=7",
    "--linger=0",
    "--poll-interval=0.25",
    "--lease=12",
    "--shutdown-timeout=0",
]
STARTED = "(concurrency 3, prefetch 0, claim batch 7, linger 0s, poll 0.25s, lease 12s)"


def test_flags_reach_every_spawned_worker(database_url: str, tmp_path: Path) -> None:
    build_app(database_url).store  # the schema, before the workers start  # noqa: B018
    log = tmp_path / "workers.log"
    env = {**os.environ, "COLUMNS": "1000"}
    env.pop("STEPWELL_DATABASE_URL", None)
    argv = [sys.executable, "-m", "stepwell", "worker", "backlog_app:app", "--database-url", database_url, *FLAGS]
    with log.open("wb") as sink:
        parent = subprocess.Popen(  # a session of its own: the finally below can stop the children too
            argv, cwd=Path(__file__).parent, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def text() -> str:
            return " ".join(log.read_text(errors="replace").split())  # the log may wrap

        wait_until(lambda: text().count(STARTED) == 2, timeout=30, what=f"two workers started with {STARTED}")
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0, log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # whatever is left of the parent and its children
        parent.wait(10)
    assert "Traceback" not in log.read_text()
