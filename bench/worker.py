"""`python -m bench.worker MODULE:APP --database-url URL [--concurrency N] [--processes P]`.

What `stepwell worker` does (load the app, `app.run_worker(...)`, one process per `--processes`),
without the CLI: at the time of writing `stepwell worker` fails on every start (its `_run_worker`
does not accept the new `--rescue-interval` option). Set STEPWELL_BENCH_CLI=1 to use the CLI itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from typing import Any

from stepwell.cli import load_app


def command(target: str, url: str, *, concurrency: int, processes: int) -> list[str]:
    """The worker command line the benchmarks start."""
    module = ["stepwell", "worker"] if os.environ.get("STEPWELL_BENCH_CLI") == "1" else ["bench.worker"]
    options = ["--database-url", url, "--concurrency", str(concurrency), "--processes", str(processes)]
    return [sys.executable, "-m", *module, target, *options]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("target")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    if args.processes > 1:
        argv = [sys.executable, "-m", "bench.worker", args.target, "--database-url", args.database_url]
        argv += ["--concurrency", str(args.concurrency)]
        children = [subprocess.Popen(argv) for _ in range(args.processes)]

        def forward(signum: int, _frame: Any) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        sys.exit(max(child.wait() for child in children))
    app = load_app(args.target, args.database_url)
    app.run_worker(concurrency=args.concurrency)
    os._exit(0)


if __name__ == "__main__":
    main()
