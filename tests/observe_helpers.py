"""Helpers of the observability tests: an in-memory OpenTelemetry SDK (installed once) and metric samples."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stepwell.observe import metrics

_exporter: InMemorySpanExporter | None = None


def span_exporter() -> InMemorySpanExporter:
    """The process's exporter, cleared: OpenTelemetry lets a process set its tracer provider once."""
    global _exporter
    if _exporter is None:
        _exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    return _exporter


def named(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def metric_value(found: metrics.Metrics, name: str, **labels: str) -> float:
    """A sample of the installed registry; 0 when it was never set (a counter not yet incremented)."""
    sample = found.registry.get_sample_value(name, labels)
    return 0.0 if sample is None else sample
