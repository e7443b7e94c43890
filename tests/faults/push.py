"""Push mode for the soak: a web app process serving `faults_app`'s pushed function, and a push dispatcher process.

The web app is FastAPI under uvicorn on a free loopback port (`faults_app.push_web`, through
`app.asgi()`), its steps writing the same effect ledger as the workers. The dispatcher is
`python -m tests.faults.push DATABASE_URL`: `App.run_scheduler(push=...)`, the code path of
`stepwell server`, unsigned and loopback-only, with the soak's short lease. Both are started here
and SIGKILLed or stopped here, by their PID; a killed one is started again on the same port.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx

import stepwell
from stepwell.push.dispatcher import PushOptions
from tests.faults.faults_app import PUSHED_FUNCTION
from tests.faults.procs import ROOT, process_env
from tests.integration.helpers import WorkerProcess
from tests.push.harness import free_port, wait_until


class PushProcesses:
    """The web app and the dispatcher of one soak; `stop_all` ends whatever is left of them."""

    def __init__(self, database_url: str, ledger: Path, log_dir: Path, *, lease: float) -> None:
        self.database_url, self.ledger, self.log_dir, self.lease = database_url, ledger, log_dir, lease
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/stepwell/"
        self.web: WorkerProcess | None = None
        self.dispatcher: WorkerProcess | None = None
        self.started: list[WorkerProcess] = []

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> WorkerProcess:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as sink:
            popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        process = WorkerProcess(popen, log, name)
        self.started.append(process)
        return process

    def start_web(self) -> None:
        """Start the web app (again) and wait until it answers; it registers `pushed` at its URL."""
        env = {**process_env(self.ledger), "STEPWELL_DATABASE_URL": self.database_url, "STEPWELL_SERVE_URL": self.url}
        env.pop("STEPWELL_SIGNING_KEY", None)
        argv = [sys.executable, "-m", "uvicorn", "--factory", "tests.faults.faults_app:push_web"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.web = self._spawn("push-web", argv, env)
        wait_until(self._up, 60, "the push web app to answer")

    def _up(self) -> bool:
        assert self.web is not None
        if not self.web.alive():
            raise AssertionError(f"the push web app exited:\n{self.web.output()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_registered(self, client: stepwell.App) -> None:
        wait_until(lambda: client.store.push_endpoints().get(PUSHED_FUNCTION) == self.url, 60, "the registration")

    def start_dispatcher(self) -> None:
        argv = [sys.executable, "-m", "tests.faults.push", self.database_url, str(self.lease)]
        self.dispatcher = self._spawn("push-dispatcher", argv, process_env(self.ledger))

    def kill_web(self) -> int:
        assert self.web is not None
        self.web.kill()
        return self.web.pid

    def kill_dispatcher(self) -> int:
        assert self.dispatcher is not None
        self.dispatcher.kill()
        return self.dispatcher.pid

    def stop_all(self) -> None:
        for process in self.started:
            if process.alive():
                process.kill()


def dispatch(database_url: str, lease: float) -> None:
    """The dispatcher process: maintenance and push delivery until SIGTERM/SIGINT (or SIGKILL)."""
    options = PushOptions(
        dev=True,
        allow_loopback=True,
        lease=timedelta(seconds=lease),
        poll_interval=0.05,
        request_timeout=10.0,
        breaker_cooldown=timedelta(seconds=0.5),
    )
    app = stepwell.App("faults-dispatcher", database_url=database_url)
    app.run_scheduler(push=options, interval=0.5)


if __name__ == "__main__":
    dispatch(sys.argv[1], float(sys.argv[2]))
