"""The trace path's shortcuts change nothing that is traced: a stored context decodes as the W3C
propagator decodes it, and a step span carries its step (its run's attributes are on the run span)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import stepwell
from stepwell.observe import tracing
from stepwell.store.base import TraceContext
from tests.conftest import EnvFactory
from tests.observe_helpers import named, span_exporter

TRACE, SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"

app = stepwell.App("trace-context-test")


@app.function("charge", trigger=stepwell.on_event("trace.charge"))
def charge(ctx: stepwell.Context[Any]) -> int:
    return int(ctx.step.run("debit", lambda: 1))


def _propagated(stored: TraceContext) -> SpanContext:
    carrier = {"traceparent": stored.traceparent}
    if stored.tracestate:
        carrier["tracestate"] = stored.tracestate
    return trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()


@pytest.mark.parametrize(
    ("traceparent", "tracestate"),
    [
        (f"00-{TRACE}-{SPAN}-01", ""),  # sampled: the form carrier_of writes
        (f"00-{TRACE}-{SPAN}-00", ""),  # not sampled
        (f"00-{TRACE}-{SPAN}-03", ""),  # sampled, random trace id (W3C level 2)
        (f"00-{TRACE}-{SPAN}-01", "vendor=abc,other=1"),
        (f"00-{'0' * 32}-{SPAN}-01", ""),  # an invalid (all-zero) trace id: no parent
        (f"00-{TRACE}-{'0' * 16}-01", ""),  # an invalid span id
        (f"00-{TRACE.upper()}-{SPAN}-01", ""),  # upper case is not W3C
        (f"01-{TRACE}-{SPAN}-01-future", ""),  # a later version, with more fields
        (f"ff-{TRACE}-{SPAN}-01", ""),  # the forbidden version
        ("garbage", ""),
    ],
)
def test_a_stored_context_decodes_as_the_w3c_propagator_decodes_it(traceparent: str, tracestate: str) -> None:
    stored = TraceContext(traceparent, tracestate)
    expected = _propagated(stored)
    for _ in range(2):  # decoded, then from the cache
        remote, linked = tracing._remote(stored)
        assert trace.get_current_span(remote).get_span_context() == expected
        assert linked == (expected if expected.is_valid else None)


def test_a_step_span_carries_its_step_and_leaves_the_runs_attributes_to_the_run_span(
    test_env: EnvFactory,
) -> None:
    exporter = span_exporter()
    with test_env(app) as env:
        env.send("trace.charge", {})
        env.run_until_idle()
    spans = exporter.get_finished_spans()
    [run] = named(spans, "run charge")
    [step] = named(spans, "step debit")
    assert step.kind == SpanKind.INTERNAL and step.parent is not None
    assert step.parent.span_id == run.get_span_context().span_id  # type: ignore[union-attr]
    assert dict(step.attributes or {}) == {"stepwell.step": "debit"}
    assert run.attributes is not None and run.attributes["stepwell.run_id"]
    assert run.attributes["messaging.system"] == "stepwell"
