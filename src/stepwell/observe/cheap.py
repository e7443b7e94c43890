"""Counters and histograms cheap enough for the hot path, exposed through prometheus-client.

prometheus-client's own `Histogram.observe` takes two locks through several Python calls (about
2 µs); a no-op run costs Stepwell some 50 µs, so two observations per run would be most of the
5% that observability may cost. These keep one lock per labelled child and plain lists, and
are turned into standard metric families only when scraped (`collect`). Same exposition, same
names, same semantics (cumulative `le` buckets, `_sum`, `_count`, `_total`).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class CounterChild:
    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self.value += amount


class HistogramChild:
    __slots__ = ("_bounds", "_lock", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect_left(self._bounds, value)  # the first bound >= value: `le` semantics
        with self._lock:
            self.counts[index] += 1
            self.total += value

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self.counts), self.total


class _Family(Collector):
    def __init__(self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.label_names = name, documentation, list(labels)
        self._lock = threading.Lock()
        registry.register(self)

    def describe(self) -> list[object]:
        return []  # nothing to check at registration beyond the name: collect() says the rest


class CheapCounter(_Family):
    """A counter family; `name` without `_total` (the exposition adds it)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry) -> None:
        super().__init__(name, documentation, labels, registry)
        self._children: dict[tuple[str, ...], CounterChild] = {}

    def child(self, *labels: str) -> CounterChild:
        found = self._children.get(labels)
        if found is None:
            with self._lock:
                found = self._children.setdefault(labels, CounterChild())
        return found

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.label_names)
        for labels, child in list(self._children.items()):
            family.add_metric(list(labels), child.value)
        yield family


class CheapHistogram(_Family):
    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, documentation, labels, registry)
        self.bounds = tuple(sorted(buckets))
        self._children: dict[tuple[str, ...], HistogramChild] = {}

    def child(self, *labels: str) -> HistogramChild:
        found = self._children.get(labels)
        if found is None:
            with self._lock:
                found = self._children.setdefault(labels, HistogramChild(self.bounds))
        return found

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.label_names)
        for labels, child in list(self._children.items()):
            counts, total = child.snapshot()
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else _le(bound), float(cumulative)))
            family.add_metric(list(labels), buckets, total)
        yield family


def _le(bound: float) -> str:
    """As prometheus-client writes bucket bounds (`0.005`, `1.0`)."""
    return repr(float(bound))
