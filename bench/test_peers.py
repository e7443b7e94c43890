"""The peer comparison's smoke test, on demand: it needs .bench-venv (bench/setup-peers) and Redis.

Not in the default suite (testpaths = tests), which must fail and never skip: run it with
`.venv/bin/pytest bench/test_peers.py`. A missing .bench-venv is a failure here, not a skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.test_bench_smoke import ROOT, row, run_quick

BENCH_VENV_PYTHON: Path = ROOT / ".bench-venv" / "bin" / "python"


def test_peers_print_every_peer_side_by_side() -> None:
    if not BENCH_VENV_PYTHON.exists():
        pytest.fail("the peers live in .bench-venv: run bench/setup-peers first")
    output = run_quick("peers", BENCH_VENV_PYTHON)
    for label in ("bare psycopg", "pgqueuer", "procrastinate", "celery", "dramatiq", "stepwell (SQLite)"):
        line = row(output, label)
        assert "nan" not in line and line.rstrip().endswith("yes"), line
    assert "best peer:" in output
