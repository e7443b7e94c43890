"""The suite fails, never skips (README): a skipped test turns a green run red."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.noskip", "-q", "-ra", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skipped_test_fails_the_run(tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path, "import pytest\n\ndef test_a():\n    pytest.skip('no server')\n\ndef test_b():\n    pass\n"
    )
    assert done.returncode == 1, done.stdout
    assert "SKIPPED" in done.stdout and "1 test(s) skipped: this suite fails, never skips" in done.stdout


def test_a_run_without_skips_passes(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, "def test_b():\n    pass\n")
    assert done.returncode == 0, done.stdout
