"""Seeded fault plans: every random choice comes from one `random.Random(seed)`, and the seed is
printed first, so a failing campaign replays with `STEPWELL_FAULT_SEED=<seed>`."""

from __future__ import annotations

import os
import random
import time

SEED_ENV = "STEPWELL_FAULT_SEED"


def seeded(name: str) -> random.Random:
    """A Random for one campaign; prints the seed (pytest shows it when the test fails)."""
    seed = int(os.environ.get(SEED_ENV) or time.time_ns() % 1_000_000_007)
    print(f"{name}: seed {seed} (replay with {SEED_ENV}={seed})")
    return random.Random(seed)


def seconds(env: str, default: float) -> float:
    """A campaign's length: short in CI, longer on demand (`STEPWELL_..._SECONDS=600`)."""
    return float(os.environ.get(env) or default)
