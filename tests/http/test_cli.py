"""The CLI's HTTP side: `stepwell tokens`, `stepwell server`, `stepwell dev` serving the API, and
`send`/`runs`/`dlq` against a remote server with --server and a token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from stepwell.cli import main
from tests.http.conftest import Served

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_tokens_create_ls_revoke(database_url: str) -> None:
    code, out = run_cli("tokens", "create", "billing", "--scope", "ingest", "--scope", "read",
                        "--database-url", database_url)  # fmt: skip
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    assert token.startswith("sw_")
    key_id = token.split("_")[1]
    code, out = run_cli("tokens", "ls", "--database-url", database_url)
    assert code == 0 and key_id in out and "ingest, read" in out and token not in out
    assert run_cli("tokens", "revoke", key_id, "--database-url", database_url)[0] == 0
    code, out = run_cli("tokens", "revoke", key_id, "--database-url", database_url)
    assert code != 0 and "revoked already" in out
    code, out = run_cli("tokens", "create", "x", "--scope", "root", "--database-url", database_url)
    assert code != 0 and "root" in out


def test_server_refuses_to_listen_beyond_loopback_without_keys(database_url: str) -> None:
    code, out = run_cli("server", "--host", "0.0.0.0", "--no-auth", "--database-url", database_url)
    assert code != 0 and "refusing to listen on 0.0.0.0 without API keys" in out


def test_send_runs_and_dlq_against_a_remote_server(served: Served) -> None:
    env = {"STEPWELL_SERVER": served.url, "STEPWELL_TOKEN": served.admin, "STEPWELL_DATABASE_URL": "sqlite:///nowhere"}
    code, out = run_cli("send", "user.created", '{"name": "remote"}', "--id", "from-cli", env=env)
    assert code == 0 and "event from-cli: started" in out, out
    [run] = served.app.runs(event_id="from-cli")
    code, out = run_cli("runs", "ls", "--json", env=env)
    assert code == 0 and run.id in out
    code, out = run_cli("runs", "show", run.id, env=env)
    assert code == 0 and run.id in out and "waiting:" in out
    run_cli("send", "boom", env=env)
    served.drain()
    code, out = run_cli("dlq", "ls", env=env)
    assert code == 0 and "explode" in out and "1 dead letter" in out
    code, out = run_cli("dlq", "redrive", "--function", "explode", env=env)
    assert code == 0 and "redriven 1 run(s)" in out
    code, out = run_cli("runs", "ls", env={**env, "STEPWELL_TOKEN": served.tokens["ingest"]})
    assert code != 0 and "403 forbidden" in out


def test_functions_pause_and_resume_against_a_remote_server(served: Served) -> None:
    env = {
        "STEPWELL_SERVER": served.url,
        "STEPWELL_TOKEN": served.tokens["operate"],
        "STEPWELL_DATABASE_URL": "sqlite:///nowhere",
    }
    code, out = run_cli("functions", "pause", "greet", env=env)
    assert code == 0 and "greet: paused since" in out, out
    [greet] = [f for f in served.app.functions() if f.name == "greet"]
    assert greet.paused_at is not None
    code, out = run_cli(
        "send", "user.created", '{"name": "held"}', "--id", "held", env={**env, "STEPWELL_TOKEN": served.admin}
    )
    [run] = served.app.runs(event_id="held")
    served.drain(seconds=1)
    code, out = run_cli("runs", "show", run.id, env={**env, "STEPWELL_TOKEN": served.admin})
    assert "function greet is paused" in out, out
    code, out = run_cli("functions", "resume", "greet", env=env)
    assert code == 0 and "greet: resumed" in out, out
    served.drain()
    assert served.app.get_run(run.id).status.value == "completed"
    code, out = run_cli("functions", "pause", "greet", env={**env, "STEPWELL_TOKEN": served.tokens["read"]})
    assert code != 0 and "403 forbidden" in out


def test_keys_pause_resume_drain_and_skip_against_a_remote_server(served: Served) -> None:
    env = {
        "STEPWELL_SERVER": served.url,
        "STEPWELL_TOKEN": served.tokens["operate"],
        "STEPWELL_DATABASE_URL": "sqlite:///nowhere",
    }
    code, out = run_cli("keys", "pause", "ordered", "k1", env=env)
    assert code == 0 and "ordered key k1: pause — done" in out, out
    served.app.send([{"name": "ordered", "data": {"k": "k1"}, "id": f"k1-{i}"} for i in range(3)])
    served.drain(seconds=1)
    assert {r.status.value for r in served.app.runs(function="ordered")} == {"queued"}  # the key is paused
    code, out = run_cli("keys", "drain", "ordered", "k1", env=env)
    assert code == 0 and "cancelled 3 run(s)" in out, out
    assert {r.status.value for r in served.app.runs(function="ordered")} == {"cancelled"}
    code, out = run_cli("keys", "resume", "ordered", "k1", env=env)
    assert code == 0 and "resume — done" in out, out
    code, out = run_cli("keys", "skip", "ordered", "k1", env=env)
    assert code == 0 and "not parked" in out, out
    code, out = run_cli("keys", "pause", "ordered", "k1", env={**env, "STEPWELL_TOKEN": served.tokens["read"]})
    assert code != 0 and "403 forbidden" in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dev_serves_the_api_on_loopback_without_keys(tmp_path: Path) -> None:
    (tmp_path / "devapp.py").write_text(
        "import stepwell\n"
        "app = stepwell.App('dev')\n"
        "@app.function('hello', trigger=stepwell.on_event('hi'))\n"
        "def hello(ctx):\n    return 'hi ' + ctx.event.data['who']\n"
    )
    port = _free_port()
    env = {**os.environ, "STEPWELL_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "stepwell", "dev", "devapp:app", "--port", str(port), "--poll-interval", "0.05"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        for _ in range(200):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        sent = httpx.post(url + "/events", json={"name": "hi", "data": {"who": "dev"}})
        assert sent.status_code == 202
        [run_id] = httpx.get(url + f"/events/{sent.json()['id']}").json()["run_ids"]
        waited = httpx.get(url + f"/runs/{run_id}/wait", params={"timeout": 20}, timeout=30).json()
        assert waited["run"]["output"] == "hi dev"
        dashboard = httpx.get(f"http://127.0.0.1:{port}/runs/{run_id}")  # no login without keys
        assert dashboard.status_code == 200 and "hi dev" in dashboard.text
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert "no keys: loopback only" in output
    assert f"dashboard on http://127.0.0.1:{port}/" in output


def test_dev_says_so_when_the_api_port_is_taken(tmp_path: Path) -> None:
    (tmp_path / "devapp2.py").write_text("import stepwell\napp = stepwell.App('dev2')\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "STEPWELL_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}", "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", "stepwell", "dev", "devapp2:app", "--port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode != 0
    assert f"cannot serve the API on 127.0.0.1:{port}" in done.stdout + done.stderr
