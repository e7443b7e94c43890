"""Real worker processes for the integration tests: start, wait, signal, kill, read side effects.

Every process is started here and stopped here, by its PID; every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.integration.integration_app import EFFECTS_ENV, gate_path

APP_DIR = Path(__file__).parent
APP_TARGET = "integration_app:app"
READY_MARK = " started (concurrency "
T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.01) -> T:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True, slots=True)
class Effect:
    """One execution of a step (or of a function's tail), as the app recorded it."""

    at: float
    pid: int
    run_id: str
    attempt: int
    label: str


class Effects:
    """The side-effect file the worker processes append to, and the gates that release held steps."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[Effect]:
        if not self.path.exists():
            return []
        effects = []
        for line in self.path.read_text().splitlines():
            at, pid, run_id, attempt, label = line.split(" ")
            effects.append(Effect(float(at), int(pid), run_id, int(attempt), label))
        return effects

    def of(self, run_id: str, label: str | None = None, *, pid: int | None = None) -> list[Effect]:
        return [
            e
            for e in self.all()
            if e.run_id == run_id and (label is None or e.label == label) and (pid is None or e.pid == pid)
        ]

    def wait_for(
        self, run_id: str, label: str, *, pid: int | None = None, count: int = 1, timeout: float = 10
    ) -> list[Effect]:
        """Wait until `label` of `run_id` has executed `count` times (by `pid`, if given)."""
        return wait_until(
            lambda: found if len(found := self.of(run_id, label, pid=pid)) >= count else None,
            timeout=timeout,
            what=f"{count} execution(s) of {label} of run {run_id}" + (f" in pid {pid}" if pid else ""),
        )

    def open_gate(self, run_id: str) -> None:
        """Release the run's held step, in whichever process holds it."""
        gate_path(self.path, run_id).touch()


class WorkerProcess:
    """One `stepwell worker` subprocess; its stderr (the log) goes to a file."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path, name: str) -> None:
        self.popen, self.log, self.name = popen, log, name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 10) -> None:
        """Wait until the worker logged that it started (it claims from then on)."""

        def ready() -> bool:
            if READY_MARK in self.output():
                return True
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited with {self.popen.returncode}:\n{self.output()}")
            return False

        wait_until(ready, timeout=timeout, what=f"worker {self.name} to start")

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        self.signal(signal.SIGCONT)  # a stopped process dies on SIGKILL too, but be plain about it
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {self.name} still running after {timeout:g}s:\n{self.output()}") from None

    def cpu_seconds(self) -> float:
        """User + system CPU time consumed so far, from /proc/PID/stat."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd (state) on; comm may hold spaces
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def freeze(self, probe: Callable[[], object]) -> None:
        """SIGSTOP, at a moment when the process holds no database lock that `probe` (a write) would wait for.

        A worker stopped inside a write transaction would block every other process's writes (and so
        the rescue under test); try again a few milliseconds later when that happens.
        """
        for _ in range(50):
            self.signal(signal.SIGSTOP)
            done = threading.Thread(target=probe, daemon=True)
            done.start()
            done.join(0.5)
            if not done.is_alive():
                return
            self.signal(signal.SIGCONT)
            done.join(10)
            time.sleep(0.005)
        raise AssertionError(f"worker {self.name} always held a database lock when stopped")


class Workers:
    """Starts worker processes for one test and kills whatever is left of them at the end."""

    def __init__(self, database_url: str, effects: Effects, log_dir: Path) -> None:
        self.database_url, self.effects, self.log_dir = database_url, effects, log_dir
        self.started: list[WorkerProcess] = []

    def start(
        self,
        *,
        lease: float = 2.0,
        rescue_interval: float = 0.5,
        poll_interval: float = 0.1,
        concurrency: int = 1,
        shutdown_timeout: float = 10.0,
        ready: bool = True,
        defaults: bool = False,
        database_url: str | None = None,
    ) -> WorkerProcess:
        """Start `stepwell worker integration_app:app`; `defaults=True` passes only the database URL.

        `database_url`: instead of the test's own (the same database with other `stepwell_*` settings, say).
        """
        name = f"w{len(self.started) + 1}"
        url = database_url or self.database_url
        argv = [sys.executable, "-m", "stepwell", "worker", APP_TARGET, "--database-url", url]
        if not defaults:
            argv += [
                f"--lease={lease}",
                f"--rescue-interval={rescue_interval}",
                f"--poll-interval={poll_interval}",
                f"--concurrency={concurrency}",
                f"--shutdown-timeout={shutdown_timeout}",
            ]
        env = {**os.environ, EFFECTS_ENV: str(self.effects.path), "COLUMNS": "1000"}  # rich: no wrapped lines
        env.pop("STEPWELL_DATABASE_URL", None)
        log = self.log_dir / f"worker-{name}.log"
        with log.open("wb") as sink:
            popen = subprocess.Popen(argv, cwd=APP_DIR, env=env, stdout=sink, stderr=subprocess.STDOUT)
        worker = WorkerProcess(popen, log, name)
        self.started.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.kill()

    def report(self) -> str:
        return "\n".join(
            f"--- worker {w.name} (pid {w.pid}, exit {w.popen.returncode}) ---\n{w.output()[-4000:]}"
            for w in self.started
        )
