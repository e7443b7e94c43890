"""Push mode as deployed: `stepwell server` (or `stepwell dev` without an app) as a real process, the web app
registering through the server's API with no database credentials, runs delivered by the server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import stepwell
from stepwell.model.records import RunStatus
from stepwell.push.remote import register_remotely
from stepwell.push.signing import new_key
from tests.push.harness import ROOT, WebApp, free_port, registered, wait_until


@contextmanager
def stepwell_process(args: list[str], database_url: str, tmp: Path, **env: str) -> Iterator[str]:
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environment.pop("STEPWELL_SIGNING_KEY", None)
    environment.update(env)
    log = open(tmp / "server.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "stepwell", *args, "--port", str(port), "--database-url", database_url],
        env=environment, cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url), 60, "the server to answer")
        yield url
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_stepwell_server_delivers_signed_to_a_web_app_that_registered_through_the_api(
    database_url: str, tmp_path: Path
) -> None:
    key = new_key()
    admin = stepwell.App("admin", database_url=database_url)
    _, token = admin.create_api_key("webshop", ["admin"])
    with stepwell_process(
        ["server", "--push-allow-private"], database_url, tmp_path, STEPWELL_SIGNING_KEY=key
    ) as server:
        web = WebApp("fastapi", None, tmp_path, key=key, STEPWELL_SERVER=server, STEPWELL_TOKEN=token).start()
        try:
            wait_until(lambda: registered(admin), what="registration through the API")
            with stepwell.Client(server, token=token) as client:
                event_id = client.send("scores.requested", {"count": 5})
                [run] = client.runs(event_id=event_id)
                done = client.wait(run.id, timeout=60)
            assert (done.status, done.output) == ("completed", {"total": 5, "completed": 5})
        finally:
            web.stop()
            admin.close()


def test_stepwell_dev_without_an_app_dispatches_unsigned_on_loopback(database_url: str, tmp_path: Path) -> None:
    admin = stepwell.App("admin", database_url=database_url)
    with stepwell_process(["dev"], database_url, tmp_path) as server:
        web = WebApp("flask", None, tmp_path, STEPWELL_SERVER=server).start()
        try:
            wait_until(lambda: registered(admin), what="registration through the API")
            [run] = admin.runs(event_id=admin.send("scores.requested", {"count": 2}))
            assert admin.wait(run.id, timeout=60).output == {"total": 2, "completed": 2}
        finally:
            web.stop()
            admin.close()


def test_registration_through_the_api_refuses_bad_input_and_changes_nothing(database_url: str, tmp_path: Path) -> None:
    admin = stepwell.App("admin", database_url=database_url)
    with stepwell_process(["dev"], database_url, tmp_path) as server:
        url = f"{server}/api/v1/functions/register"
        for body, field in (
            ({"app": "a", "definitions": "x"}, "definitions"),
            ({"app": "a", "definitions": [{"format": 99}]}, None),
            ({"app": "a", "definitions": [], "push_url": "ftp://x/", "push_functions": []}, None),
            ({"app": "a", "definitions": [], "push_functions": ["ghost"]}, None),
        ):
            response = httpx.post(url, json=body, timeout=10)
            assert response.status_code == 422, response.text
            assert field is None or response.json()["field"] == field
        assert admin.functions() == [] and admin.store.push_endpoints() == {}
    admin.close()


@contextmanager
def stalling_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers: a pushed run stays claimed."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/push"
    finally:
        stop.set()
        thread.join(5)
        for connection in [*held, listener]:
            connection.close()


@pytest.mark.parametrize("command", ["server", "dev"])
def test_push_lease_sets_how_long_a_pushed_run_is_held(command: str, database_url: str, tmp_path: Path) -> None:
    """`--push-lease 120`: while the request hangs, the run's lease reaches past the default 30 s (a
    rescue 60 s ahead finds nothing) and ends within 120 s of the last renewal."""
    producer = stepwell.App("producer", database_url=database_url)

    @producer.function("stall", trigger=stepwell.on_event("stall.go"), retries=0)
    def stall(ctx: stepwell.Context) -> None: ...

    args = [command, "--push-lease", "120"] + (["--no-auth"] if command == "server" else [])
    with stepwell_process(args, database_url, tmp_path) as server, stalling_endpoint() as endpoint:
        register_remotely(producer, server, None, endpoint, ["stall"])
        [run] = producer.runs(event_id=producer.send("stall.go"))
        wait_until(lambda: producer.get_run(run.id).status == RunStatus.RUNNING, 30, "the run to be pushed")
        now = datetime.now(UTC)
        assert producer.store.rescue_expired_leases(now=now + timedelta(seconds=60)) == 0
        assert producer.store.rescue_expired_leases(now=now + timedelta(seconds=121)) == 1
    producer.close()


def test_push_lease_is_refused_below_a_second_and_with_an_app_in_dev() -> None:
    from click.testing import CliRunner

    from stepwell.cli import main  # every command registered

    refused = CliRunner().invoke(main, ["server", "--push-lease", "0.5"])
    assert refused.exit_code == 2 and "--push-lease" in refused.output
    with_app = CliRunner().invoke(main, ["dev", "tests.push.webapp:app", "--push-lease", "60"])
    assert with_app.exit_code == 2 and "--push-lease applies to push mode" in with_app.output
