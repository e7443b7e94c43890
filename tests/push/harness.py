"""Real processes on loopback for the push tests: the web app (uvicorn or waitress) and a dispatcher thread."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import stepwell
from stepwell.push.dispatcher import Dispatcher, PushOptions
from stepwell.push.signing import parse_keys

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = {"checkout", "receipt", "score", "scores", "flaky", "reduce", "reduce-async", "chatty"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class WebApp:
    """`kind`: "fastapi" (uvicorn) or "flask" (waitress). Start, SIGKILL, start again on the same port."""

    def __init__(self, kind: str, database_url: str | None, tmp: Path, key: str | None = None, **env: str) -> None:
        self.kind, self.port = kind, free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/stepwell/"  # Starlette redirects a mount without the slash
        self.ledger = tmp / "ledger.txt"
        self.env = {
            **os.environ,
            "STEPWELL_SERVE_URL": self.url,
            "PUSH_LEDGER": str(self.ledger),
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.env.pop("STEPWELL_SIGNING_KEY", None)
        self.env.pop("STEPWELL_DATABASE_URL", None)
        if database_url is not None:  # else it registers through the server's API ($STEPWELL_SERVER)
            self.env["STEPWELL_DATABASE_URL"] = database_url
        if key:
            self.env["STEPWELL_SIGNING_KEY"] = key
        self.log = tmp / f"{kind}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WebApp:
        if self.kind == "fastapi":
            command = [sys.executable, "-m", "uvicorn", "--factory", "tests.push.webapp:fastapi_app"]
            command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        else:
            command = [sys.executable, "-m", "waitress", "--host=127.0.0.1", f"--port={self.port}"]
            command += ["--threads=16", "--call", "tests.push.webapp:flask_app"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=log, stderr=log)
        wait_until(self._up, 30, f"{self.kind} app to answer")
        return self

    def _up(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/hello", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def executions(self, name: str) -> int:
        if not self.ledger.exists():
            return 0
        return self.ledger.read_text().split().count(name)


class DispatcherThread:
    """The server's side: a push dispatcher and maintenance, on an event loop of their own."""

    def __init__(self, database_url: str, key: str | None = None, **options: Any) -> None:
        self.server = stepwell.App("server", database_url=database_url)
        keys = parse_keys(key)
        defaults: dict[str, Any] = {"signing_keys": keys, "dev": not keys, "allow_loopback": True}
        defaults.update(poll_interval=0.05, breaker_cooldown=_seconds(1.0), request_timeout=10.0)
        self.options = PushOptions(**{**defaults, **options})
        self.dispatcher = Dispatcher(self.server.store, self.server.clock, self.server.router, self.options)
        self._thread = threading.Thread(target=self._main, name="push-dispatcher", daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await asyncio.gather(self.dispatcher.run(self._stop), self.server.run_maintenance(self._stop, interval=0.1))

        asyncio.run(main())

    def __enter__(self) -> DispatcherThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.server.close()


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


def registered(app: stepwell.App, names: set[str] = FUNCTIONS) -> bool:
    return names <= set(app.store.push_endpoints())
