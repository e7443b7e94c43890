"""Prometheus metrics: what happened to events and runs, how long it took, how deep the queue is.

Labels are bounded by code: function names, step names (without their `#n` repeat suffix) and
event names, each capped per family (`MAX_LABEL_VALUES`; beyond it the value `_other`), never
run ids, event ids or keys. Seconds everywhere. `render()` returns the exposition text for any
server to mount at /metrics; `serve(port)` serves it from a small thread on 127.0.0.1.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from stepwell.observe.cheap import CheapCounter, CheapHistogram, HistogramChild
from stepwell.store.base import FunctionQueue

MAX_LABEL_VALUES = 200
MAX_STEP_CHILDREN = 10_000  # (function, step id, status) resolved and kept for the hot path
OTHER = "_other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Capped:
    """Bounds the values one label may take: the first MAX_LABEL_VALUES, then `_other`."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= MAX_LABEL_VALUES:
            return OTHER
        self._seen.add(value)
        return value


class _Family:
    """A metric family with its labelled children cached: `.labels()` costs a lock and a dict each time."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def child(self, *labels: str) -> Any:
        found = self._children.get(labels)
        if found is None:
            found = self._children[labels] = self.metric.labels(*labels)
        return found


class FunctionMetrics:
    """One function's labelled children of the per-run metrics, resolved once: the hot path pays
    a dict lookup per run, not a label check and a `.labels()` per metric."""

    def __init__(self, metrics: Metrics, function: str) -> None:
        self.finished = {status: metrics.runs_finished.child(function, status) for status in ("completed", "failed")}
        self.retried = metrics.runs_retried.child(function)
        self.dead_letters = metrics.dead_letters.child(function)
        self.schedule_to_start = metrics.schedule_to_start.child(function)
        self.started = metrics.runs_started.child(function)
        self._duration = metrics.run_duration
        self._function = function
        self.durations: dict[str, Any] = {}

    def duration(self, outcome: str) -> Any:
        found = self.durations.get(outcome)
        if found is None:
            found = self.durations[outcome] = self._duration.child(self._function, outcome)
        return found


class Metrics:
    """Every Stepwell metric, registered on one registry (the default one, or a test's own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.event_names, self.functions, self.steps = _Capped(), _Capped(), _Capped()
        self.events_received = CheapCounter(
            "stepwell_events_received", "Events accepted, by name and disposition (started, deduplicated, no_run)",
            ["event", "disposition"], r)  # fmt: skip
        self.runs_created = CheapCounter(
            "stepwell_runs_created", "Runs queued (by events, enqueue, replay, invoke and fan-out)",
            ["function"], r)  # fmt: skip
        self.runs_started = CheapCounter(
            "stepwell_runs_started", "Attempts claimed by a worker to start (first attempts, retries and resumptions)",
            ["function"], r)  # fmt: skip
        self.runs_finished = CheapCounter(
            "stepwell_runs_finished", "Runs that ended, by status (completed, failed)", ["function", "status"],
            r)  # fmt: skip
        self.runs_retried = CheapCounter(
            "stepwell_runs_retried", "Failed attempts scheduled to run again", ["function"], r
        )
        self.runs_rescued = CheapCounter(
            "stepwell_runs_rescued", "Runs whose lease expired (a lost worker) and were requeued or dead-lettered",
            [], r).child()  # fmt: skip
        self.dead_letters = CheapCounter(
            "stepwell_dead_letters", "Runs dead-lettered by a worker (retries exhausted or not retriable)",
            ["function"], r)  # fmt: skip
        self.run_duration = CheapHistogram(
            "stepwell_run_duration_seconds", "One attempt, from start to its outcome", ["function", "outcome"],
            r, DURATION_BUCKETS)  # fmt: skip
        self.step_duration = CheapHistogram(
            "stepwell_step_duration_seconds", "One execution of a step's code", ["function", "step", "status"],
            r, DURATION_BUCKETS)  # fmt: skip
        self.schedule_to_start = CheapHistogram(
            "stepwell_schedule_to_start_seconds", "From ready (due) to claimed by a worker",
            ["function"], r, LATENCY_BUCKETS)  # fmt: skip
        self.fan_out_children = CheapCounter(
            "stepwell_fan_out_children", "Fan-out children by state (created, completed, failed, cancelled)",
            ["function", "state"], r)  # fmt: skip
        self.queue_depth = _Family(Gauge(
            "stepwell_queue_depth", "Ready runs (due and claimable) per function, from a bounded scan",
            ["function"], registry=r))  # fmt: skip
        self.oldest_ready_age = _Family(Gauge(
            "stepwell_queue_oldest_ready_age_seconds", "Age of the oldest ready run per function",
            ["function"], registry=r))  # fmt: skip
        self.queue_scan_capped = Gauge(
            "stepwell_queue_scan_capped", "1 when the last queue sample stopped at its scan limit (depth is a floor)",
            registry=r)  # fmt: skip
        self.queue_sampled_at = Gauge(
            "stepwell_queue_sampled_timestamp_seconds", "When the queue gauges were last sampled", registry=r
        )
        self._gauged: set[str] = set()
        self._lock = threading.Lock()
        self._per_function: dict[str, FunctionMetrics] = {}
        self._per_step: dict[tuple[str, str, str], HistogramChild] = {}

    def function(self, name: str) -> FunctionMetrics:
        """The per-run metrics of function `name` (bounded like every label)."""
        found = self._per_function.get(name)
        if found is None:
            label = self.functions(name)
            found = self._per_function[name] = FunctionMetrics(self, label)
        return found

    def step(self, function: str, step_id: str, status: str) -> HistogramChild:
        """The step-duration child of a step (its id without the `#n` repeat suffix), resolved once."""
        key = (function, step_id, status)
        found = self._per_step.get(key)
        if found is None:
            child = self.step_duration.child(self.functions(function), self.steps(step_id.split("#", 1)[0]), status)
            if len(self._per_step) < MAX_STEP_CHILDREN:  # repeated ids (`name#2`, ...) are resolved each time past it
                self._per_step[key] = child
            found = child
        return found

    def set_queue(self, functions: Sequence[str], queues: Sequence[FunctionQueue], now: float, at: float) -> None:
        """Publish one queue sample; functions with nothing ready read 0 (not a stale value)."""
        seen = {q.function: q for q in queues}
        with self._lock:
            names = set(functions) | set(seen) | self._gauged
            for name in names:
                label = self.functions(name)
                queue = seen.get(name)
                self.queue_depth.child(label).set(0 if queue is None else queue.ready)
                oldest = None if queue is None else queue.oldest_ready_at
                self.oldest_ready_age.child(label).set(0.0 if oldest is None else max(now - oldest.timestamp(), 0.0))
            self._gauged = names
            self.queue_scan_capped.set(1 if any(q.capped for q in queues) else 0)
            self.queue_sampled_at.set(at)


_lock = threading.Lock()
_current: Metrics | None = None


def current() -> Metrics:
    """The process's metrics, created on first use on the default registry of prometheus_client."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                from prometheus_client import REGISTRY

                _current = Metrics(REGISTRY)
    return _current


def install(registry: CollectorRegistry | None = None) -> Metrics:
    """Record into a fresh set of metrics on `registry` (a new private registry when None): tests count from zero."""
    global _current
    with _lock:
        _current = Metrics(registry if registry is not None else CollectorRegistry(auto_describe=True))
    return _current


def render() -> bytes:
    """The Prometheus text exposition of this process's metrics (serve it with CONTENT_TYPE)."""
    return bytes(generate_latest(current().registry))


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on host:port from a daemon thread (the `--metrics-port` of `stepwell worker`)."""
    start_http_server(port, addr=host, registry=current().registry)
