"""Processes for the fault tests: workers of `faults_app`, and one-shot clients that may crash.

Every process is started here and stopped here by its PID (tests/integration/helpers.WorkerProcess).
`crash` arms named crash points (src/stepwell/runtime/crashpoints.py) in that process only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stepwell.runtime.crashpoints import ENV as CRASH_ENV
from stepwell.runtime.crashpoints import EXIT_CODE as CRASH_EXIT
from tests.faults.ledger import LEDGER_ENV
from tests.integration.helpers import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
APP_TARGET = "tests.faults.faults_app:app"


def process_env(ledger: Path, crash: str | None = None) -> dict[str, str]:
    env = {**os.environ, LEDGER_ENV: str(ledger), "PYTHONPATH": str(ROOT), "COLUMNS": "1000"}
    env.pop("STEPWELL_DATABASE_URL", None)
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return env


class FaultWorkers:
    """Worker processes of `faults_app` for one test; whatever is left is killed at the end."""

    def __init__(self, database_url: str, ledger: Path, log_dir: Path) -> None:
        self.database_url, self.ledger, self.log_dir = database_url, ledger, log_dir
        self.started: list[WorkerProcess] = []

    def start(
        self,
        *,
        crash: str | None = None,
        lease: float = 2.0,
        concurrency: int = 2,
        poll_interval: float = 0.1,
        rescue_interval: float = 0.5,
        ready: bool = True,
        database_url: str | None = None,
    ) -> WorkerProcess:
        name = f"w{len(self.started) + 1}"
        argv = [
            sys.executable,
            "-m",
            "stepwell",
            "worker",
            APP_TARGET,
            "--database-url",
            database_url or self.database_url,
            f"--lease={lease}",
            f"--rescue-interval={rescue_interval}",
            f"--poll-interval={poll_interval}",
            f"--concurrency={concurrency}",
            "--shutdown-timeout=5",
        ]
        log = self.log_dir / f"worker-{name}.log"
        with log.open("wb") as sink:
            popen = subprocess.Popen(
                argv, cwd=ROOT, env=process_env(self.ledger, crash), stdout=sink, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(popen, log, name)
        self.started.append(worker)
        if ready:
            worker.wait_ready(timeout=30)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.kill()

    def report(self) -> str:
        return "\n".join(
            f"--- worker {w.name} (pid {w.pid}, exit {w.popen.returncode}) ---\n{w.output()[-3000:]}"
            for w in self.started
        )


def run_client(database_url: str, ledger: Path, history: Path, args: list[str], *, crash: str | None = None) -> int:
    """`python -m tests.faults.client ...` to its end (or its crash); returns its exit code."""
    argv = [sys.executable, "-m", "tests.faults.client", database_url, str(history), *args]
    done = subprocess.run(argv, cwd=ROOT, env=process_env(ledger, crash), capture_output=True, timeout=60, check=False)
    if done.returncode not in (0, CRASH_EXIT):
        raise AssertionError(f"client exited {done.returncode}:\n{done.stdout.decode()}\n{done.stderr.decode()}")
    return done.returncode
