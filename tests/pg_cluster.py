"""A throwaway PostgreSQL cluster for tests that stop, crash or cut the server.

The machine's shared server (127.0.0.1:5432) serves every other test run: a test must never
restart it. `ThrowawayCluster` runs `initdb` in a temporary folder, starts its own postmaster on
a free loopback port (unix socket in the same folder), and is stopped and deleted at the end.
When the tests run as root (initdb refuses root), the cluster belongs to the `postgres` OS user.

    with ThrowawayCluster() as cluster:
        url = cluster.url()           # database "test", trust auth
        cluster.stop("immediate")     # a crash: no shutdown checkpoint, recovery at the next start
        cluster.start()
        cluster.terminate_all()       # pg_terminate_backend of every client connection
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import psycopg
import pytest
from psycopg import sql

START_TIMEOUT = 60  # crash recovery after an immediate stop can be slow on a loaded machine


def postgres_bin() -> Path:
    """The newest installed server's binaries (Debian layout: /usr/lib/postgresql/<version>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        on_path = shutil.which("initdb")
        if on_path is None:
            raise RuntimeError("no PostgreSQL server binaries: looked in /usr/lib/postgresql/*/bin and on PATH")
        return Path(on_path).parent
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayCluster:
    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="stepwell-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",  # the machine never crashes in these tests, only the server does
            "max_connections": "200",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            **(settings or {}),
        }
        self.running = False

    # lifecycle

    def __enter__(self) -> ThrowawayCluster:
        self.init()
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.destroy()

    def init(self) -> None:
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run([self.bin / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in self.settings.items())
        self._started_once = False

    def start(self) -> None:
        """Start the postmaster and wait until it accepts connections (after crash recovery, if any)."""
        self._run([self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", str(START_TIMEOUT), "start"])
        self.running = True
        if not self._started_once:
            self._started_once = True
            with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE test")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m smart|fast|immediate`: immediate is a crash (no checkpoint, clients cut)."""
        self._run([self.bin / "pg_ctl", "-D", self.data, "-w", "-t", str(START_TIMEOUT), "-m", mode, "stop"])
        self.running = False

    def restart(self, mode: str = "fast", *, down_for: float = 0.0) -> float:
        """Stop (in `mode`), stay down `down_for` seconds, start again; returns the seconds it was down."""
        started = time.monotonic()
        self.stop(mode)
        time.sleep(down_for)
        self.start()
        return time.monotonic() - started

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # clients

    def url(self, database: str = "test") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def schema_url(self) -> str:
        """A URL to a new empty schema of database `test` (as tests/conftest.py does on the shared server)."""
        schema = f"stepwell_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return f"{self.url()}?options=-csearch_path%3D{schema}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def terminate_all(self, application_name: str | None = None) -> int:
        """pg_terminate_backend every client connection (but this one), or those of one application."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
                " AND (%s::text IS NULL OR application_name = %s)",
                [application_name, application_name],
            ).fetchall()
        return len(rows)

    def _run(self, argv: list[object]) -> None:
        command = [str(arg) for arg in argv]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT + 30, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}\n{log}")


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[ThrowawayCluster]:
    """One throwaway cluster per test module; tests in it may stop, crash and restart it."""
    with ThrowawayCluster() as cluster:
        yield cluster
