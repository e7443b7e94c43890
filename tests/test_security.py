"""Security checklist items that hold without the HTTP layer: file modes, and no SQL from input."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import stepwell
from tests.conftest import EnvFactory


def test_the_sqlite_database_and_its_wal_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    app = stepwell.App("private", database_url=f"sqlite:///{tmp_path / 'stepwell.db'}")

    @app.function("f", trigger=stepwell.on_event("e"))
    def f(ctx: stepwell.Context[Any]) -> None:
        return None

    try:
        app.send("e", {"secret": "s3cr3t"})
        files = sorted(tmp_path.glob("stepwell.db*"))
        assert [p.name for p in files] == ["stepwell.db", "stepwell.db-shm", "stepwell.db-wal"]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path.name} is {oct(path.stat().st_mode)}"
    finally:
        app.close()


def test_hostile_strings_are_stored_literally_and_change_no_table(test_env: EnvFactory) -> None:
    """SQL fragments, LIKE wildcards, markup and forged log lines in keys and data are plain values."""
    app = stepwell.App("hostile")
    hostile = [
        "'; DROP TABLE runs; --",
        "%_%",
        "<script>alert(1)</script>",
        "line\nWARNING forged",
        "x" * 512,
    ]  # the longest key allowed

    @app.function("f", trigger=stepwell.on_event("e"), ordering_key="event.data.key")
    def f(ctx: stepwell.Context[Any]) -> str:
        return str(ctx.step.run("echo", lambda: ctx.event.data["key"]))

    with test_env(app) as env:
        for value in hostile:
            env.send("e", {"key": value})
        env.run_until_idle()
        runs = app.runs(function="f", limit=100)
        assert sorted(run.output for run in runs) == sorted(hostile)
        assert {run.ordering_key for run in runs} == set(hostile)
        assert len(app.runs(function="f", key="%_%")) == 1  # a key search is literal, not a pattern
