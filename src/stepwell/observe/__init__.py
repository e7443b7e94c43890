"""Observability, wrapped around the engine once: logs, Prometheus metrics, OpenTelemetry traces.

Two seams carry all of it: `store.observed_store` wraps the Store (events in, claims, settlements,
trace context, ctx.log lines), and `attempt.observe_attempt` / `attempt.observe_step` wrap one
attempt and one executing step in the runtime. Nothing else in Stepwell creates loggers for runs,
metrics or spans.

`configure(metrics=..., tracing=...)` switches either off for the whole process (benchmarks).
"""

from __future__ import annotations

from stepwell.observe.settings import SETTINGS, configure

__all__ = ["SETTINGS", "configure"]
