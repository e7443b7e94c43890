"""The worker command line the benchmarks start: the real `stepwell worker`, nothing in between."""

from __future__ import annotations

import sys


def command(target: str, url: str, *, concurrency: int, processes: int) -> list[str]:
    options = ["--database-url", url, "--concurrency", str(concurrency), "--processes", str(processes)]
    return [sys.executable, "-m", "stepwell", "worker", target, *options]
