"""Schemathesis fuzzes the API from the OpenAPI document the server serves: never a 500.

A short run here (a few examples per operation, 25 s at most); for a longer one set
STEPWELL_FUZZ_EXAMPLES=500 STEPWELL_FUZZ_SECONDS=600.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.http.conftest import Served

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_no_server_error(served: Served, tmp_path: Path) -> None:
    examples = os.environ.get("STEPWELL_FUZZ_EXAMPLES", "8")
    done = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{served.url}/api/v1/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", examples, "--seed", "1",
         "--header", f"Authorization: Bearer {served.admin}", "--request-timeout", "20",
         "--workers", "1", "--phases", "coverage,fuzzing",
         "--max-time", os.environ.get("STEPWELL_FUZZ_SECONDS", "25"),
         "--suppress-health-check", "all", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert " passed" in output and "failed" not in output.split("Seed:")[0].lower().split("test cases:")[-1], output[
        -3000:
    ]
