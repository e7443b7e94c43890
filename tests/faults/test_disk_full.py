"""SQLite on a nearly full filesystem (RELIABILITY 27): a small tmpfs of the test's own.

Ingest refuses with a clear error (`StoreFull`, "nothing was stored") and acknowledges nothing
unsaved; the worker stays up instead of crash-looping; the database passes its integrity
check; and when space returns, work resumes by itself and every acknowledged event completes.
Needs the right to mount a tmpfs (root, as in CI); skipped, saying so, without it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import stepwell
from stepwell.errors import StoreFull
from tests.faults import ledger
from tests.faults.checkers import check
from tests.faults.faults_app import JOB, build_app
from tests.faults.history import History
from tests.faults.procs import FaultWorkers
from tests.integration.fleet import wait_drained

pytestmark = pytest.mark.slow
DISK = "4m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill the filesystem, then give back `leave` bytes."""
    filler = disk / "filler"
    with filler.open("wb") as sink, contextlib.suppress(OSError):
        while True:
            sink.write(b"\0" * 65536)
            sink.flush()
    os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def test_a_full_disk_refuses_ingest_clearly_and_work_resumes_when_space_returns(
    small_disk: Path, tmp_path: Path, history: History, ledger_path: Path
) -> None:
    url = f"sqlite:///{small_disk / 'stepwell.db'}"
    client = build_app(url)
    client.store  # noqa: B018 - the schema, before the disk fills
    workers = FaultWorkers(url, ledger_path, tmp_path)
    try:
        worker = workers.start(lease=2.0, concurrency=2)
        filler = fill(small_disk, leave=300_000)
        blob = "y" * 20_000
        refused: list[str] = []
        for n in range(100):
            event = f"job-{n}"
            if history.call("client", "send", event, lambda e=event: client.send(JOB, {"blob": blob}, id=e)) is None:
                refused.append(event)
            if len(refused) >= 5:
                break
        assert len(refused) >= 5, "the disk never filled"
        [failure] = [op for op in history.ops() if op.value == refused[0] and op.type != "invoke"]
        assert (
            failure.type == "fail"
            and "StoreFull" in (failure.error or "")
            and "nothing was stored" in (failure.error or "")
        )
        with pytest.raises(StoreFull, match="out of space"):
            client.send(JOB, {"blob": blob})
        time.sleep(2)  # the worker meets the full disk in its own writes meanwhile
        assert worker.alive(), worker.output()
        with contextlib.closing(sqlite3.connect(small_disk / "stepwell.db")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        filler.unlink()  # space returns: nothing to restart
        later = [f"later-{n}" for n in range(5)]
        for event in later:
            assert history.call("client", "send", event, lambda e=event: client.send(JOB, {}, id=e)) is not None
        wait_drained(client, timeout=60)
        runs = [client.get_run(run.id) for run in client.runs(limit=1000)]
        report = check(history.ops(), ledger.read(ledger_path), runs, database_url=url)
        assert report.problems() == [], report.summary()
        assert all(run.status == stepwell.RunStatus.COMPLETED for run in runs)
        assert worker.alive(), worker.output()
    finally:
        workers.stop_all()
        client.close()
