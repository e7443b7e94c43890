"""Rows of the observability reads, decoded once for both backends."""

from __future__ import annotations

from collections.abc import Sequence

from stepwell.store.base import FunctionActivity


def activity(finished: Sequence[Sequence[object]], dead: Sequence[Sequence[object]]) -> list[FunctionActivity]:
    """One FunctionActivity per function seen in either read."""
    counts: dict[str, dict[str, int]] = {}
    for function, status, count in finished:
        counts.setdefault(str(function), {})[str(status)] = int(count)  # type: ignore[call-overload]
    for function, count in dead:
        counts.setdefault(str(function), {})["dead"] = int(count)  # type: ignore[call-overload]
    return [
        FunctionActivity(fn, c.get("completed", 0), c.get("failed", 0), c.get("dead", 0))
        for fn, c in sorted(counts.items())
    ]
