"""The result of `ctx.step.fan_out`: counts, and the children's outputs read lazily from the store."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from stepwell.errors import ConfigurationError
from stepwell.model.records import ChildResult, FanOutCounts, RunStatus

PageReader = Callable[[int, int], list[ChildResult]]


class FanOut:
    """Counts are fixed when the fan-out finished; `results()` pages through the children in item order."""

    def __init__(self, counts: dict[str, int], read_page: PageReader) -> None:
        self.total = counts["total"]
        self.completed = counts["completed"]
        self.failed = counts["failed"]
        self.cancelled = counts["cancelled"]
        self._read_page = read_page

    def children(self, page_size: int = 1000) -> Iterator[ChildResult]:
        """Every child (index, run id, status, output, error), in item order, a page at a time."""
        after = -1
        while True:
            page = self._read_page(after, page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1].index

    def results(self, page_size: int = 1000) -> Iterator[Any]:
        """Each child's output in item order; None for a child that failed or was cancelled."""
        for child in self.children(page_size):
            yield child.output

    def failures(self) -> Iterator[ChildResult]:
        """The children that did not complete."""
        return (child for child in self.children() if child.status != RunStatus.COMPLETED)

    def __repr__(self) -> str:
        counts = f"total={self.total}, completed={self.completed}, failed={self.failed}, cancelled={self.cancelled}"
        return f"FanOut({counts})"


def check_tolerate(tolerate: object) -> float:
    """A count of failures (an int >= 0) or a fraction of the children (a float in [0, 1))."""
    if isinstance(tolerate, bool) or not isinstance(tolerate, int | float):
        raise ConfigurationError(f"fan_out tolerate={tolerate!r} must be a count (int >= 0) or a fraction in [0, 1)")
    if isinstance(tolerate, int) and tolerate >= 0:
        return float(tolerate)
    if isinstance(tolerate, float) and 0 <= tolerate < 1:
        return tolerate
    raise ConfigurationError(f"fan_out tolerate={tolerate!r} must be a count (int >= 0) or a fraction in [0, 1)")


def tolerated_failures(tolerate: float, total: int) -> int:
    return int(tolerate) if tolerate >= 1 or tolerate == 0 else math.floor(tolerate * total)


def summary(counts: FanOutCounts) -> dict[str, int]:
    return {
        "total": counts.total or 0,
        "completed": counts.completed,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
    }
