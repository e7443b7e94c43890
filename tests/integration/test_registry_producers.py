"""Producers that import no user code start exactly the runs the consumers' apps define.

Real processes on every backend: two consumer apps (`shop`, `mail`) run as `stepwell worker`
processes on one database and register their functions; a producer script that imports only
`stepwell` sends events with `app.send`, and `stepwell send` sends one without `--app`. Each
event must start the matching functions of both apps, each app's worker runs only its own, and
the flow-control keys come from the stored definitions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import stepwell
from tests.integration.helpers import wait_until

APP_DIR = Path(__file__).parent
PRODUCER = """
import sys
import stepwell

app = stepwell.App("checkout", database_url=sys.argv[1])
assert not app.registry.names(), "the producer defines no functions"
ids = [
    app.send("order.placed", {"order": 1, "customer": "c1", "rush": True}),
    app.send("order.paid", {"order": 1, "customer": "c1"}),
    app.send("user.created", {"user": 7}),
    app.send("nothing.listens", {}),
]
assert not [m for m in sys.modules if m.startswith("registry_apps") or m.startswith("tests")], sorted(sys.modules)
print(" ".join(ids))
"""


class Consumers:
    """`stepwell worker` processes of the registry apps; stopped by PID at the end."""

    def __init__(self, database_url: str, effects: Path, logs: Path) -> None:
        self.database_url, self.effects, self.logs = database_url, effects, logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, target: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "stepwell", "worker", target, "--database-url", self.database_url]
        argv += ["--poll-interval=0.1", "--rescue-interval=0.5"]
        env = {**os.environ, "STEPWELL_TEST_EFFECTS": str(self.effects), "COLUMNS": "1000"}
        env.pop("STEPWELL_DATABASE_URL", None)
        with (self.logs / f"{target.replace(':', '-')}.log").open("wb") as sink:
            popen = subprocess.Popen(argv, cwd=APP_DIR, env=env, stdout=sink, stderr=subprocess.STDOUT)
        self.started.append(popen)
        return popen

    def stop_all(self) -> None:
        for popen in self.started:
            if popen.poll() is None:
                os.kill(popen.pid, signal.SIGTERM)
        for popen in self.started:
            try:
                popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)


@pytest.fixture
def consumers(database_url: str, tmp_path: Path) -> Iterator[Consumers]:
    started = Consumers(database_url, tmp_path / "effects.log", tmp_path)
    yield started
    started.stop_all()
    for log in tmp_path.glob("*.log"):
        print(log.name, log.read_text(errors="replace")[-3000:])  # shown by pytest when the test failed


def effects(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return sorted(tuple(line.split(" ")) for line in path.read_text().splitlines())  # type: ignore[misc]


def test_producers_without_user_code_start_exactly_the_consumers_runs(
    consumers: Consumers, database_url: str, tmp_path: Path
) -> None:
    observer = stepwell.App("observer", database_url=database_url)
    observer.store  # the schema, before the workers start  # noqa: B018
    consumers.start("registry_apps:shop")
    consumers.start("registry_apps:mail")
    wait_until(
        lambda: {f.name for f in observer.functions() if f.retired_at is None} == {"ship", "bill", "notify"},
        timeout=30,
        what="both consumer apps to register their functions",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STEPWELL_DATABASE_URL")}
    env["COLUMNS"] = "1000"
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    produced = subprocess.run(
        [sys.executable, str(script), database_url], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert produced.returncode == 0, produced.stderr
    placed, paid, created, unheard = produced.stdout.split()
    sent = subprocess.run(
        [sys.executable, "-m", "stepwell", "send", "order.placed", '{"order": 2, "customer": "c2"}'],
        cwd=tmp_path,
        env={**env, "STEPWELL_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    cli_placed = sent.stdout.split()[1].rstrip(":")

    expected = sorted([
        ("ship", placed), ("notify", placed), ("bill", paid), ("notify", created),
        ("ship", cli_placed), ("notify", cli_placed),
    ])  # fmt: skip
    wait_until(lambda: len(effects(consumers.effects)) >= len(expected), timeout=60, what="every expected run")
    for run in observer.runs(limit=100):
        observer.wait(run.id, timeout=30)
    assert effects(consumers.effects) == expected
    runs = observer.runs(limit=100)
    assert sorted((run.function, run.event_id) for run in runs) == expected
    assert all(run.status is stepwell.RunStatus.COMPLETED for run in runs)
    assert observer.event(unheard).run_ids == ()
    [shipped] = observer.runs(event_id=placed, function="ship")
    assert shipped.ordering_key == "c1", "the ordering key was evaluated from the stored definition"
    observer.close()
