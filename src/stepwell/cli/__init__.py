"""`stepwell`: run workers, send events, inspect runs and dead letters, migrate.

`common` holds the group and what commands share; each command family lives in its own module and
registers itself on `main` when imported here. A new family is a new module plus one import line.
"""

from __future__ import annotations

from stepwell.cli import dlq, events, functions, keys, migrate, observe, registry, runs, server, tokens, workers
from stepwell.cli.common import load_app, main

__all__ = [
    "dlq",
    "events",
    "functions",
    "keys",
    "load_app",
    "main",
    "migrate",
    "observe",
    "registry",
    "runs",
    "server",
    "tokens",
    "workers",
]
