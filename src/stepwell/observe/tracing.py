"""OpenTelemetry spans: `send {event}` (PRODUCER), `run {function}` (CONSUMER, one per attempt),
`step {id}` (INTERNAL), with the messaging semantic conventions where they fit.

Only the OpenTelemetry API is a dependency: spans are made when the application installed an SDK
tracer provider (the `otel` extra), and cost one isinstance check otherwise. The W3C trace context
travels through the store (migration 0005): the event keeps its producer's, a run its own when it
differs (a child run: its parent's; a replay: the original's, as a link).

Incoming contexts: `App.send` reads the current OpenTelemetry context, so a caller that has a
span open (a web framework's instrumentation) is the producer's parent. Code that holds only a
carrier (HTTP headers with `traceparent`) wraps the send in `with incoming(headers): app.send(...)`.

Push mode: the dispatcher sends the run's context as `traceparent` / `tracestate` headers, and
`stepwell-trace: continue|link` with the pull worker's rule decided on the claim (`continues`), so
that every request of one attempt (one per checkpoint) continues the producer's trace, or starts a
new one linked to it, as that attempt would in a pull worker. The endpoint reads them back
(`pushed_trace`) and starts its run span with the decision it was sent.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from stepwell.observe.settings import SETTINGS
from stepwell.store.base import ClaimedRun, TraceContext

SYSTEM = "stepwell"
MODE_HEADER = "stepwell-trace"  # push requests: "continue" the traceparent, or "link" to it
MAX_TRACE_HEADER = 512  # characters of traceparent / tracestate read from a push request
_PROPAGATOR = TraceContextTextMapPropagator()
_resolved: tuple[object, trace.Tracer | None] = (None, None)  # (the provider last seen, its tracer)


def tracer() -> trace.Tracer | None:
    """The stepwell tracer, or None when nothing would record spans (tracing off, or no SDK installed).

    Asked for per attempt and per step: the answer is kept per provider, so it costs an identity check."""
    global _resolved
    if not SETTINGS.tracing:
        return None
    provider = trace.get_tracer_provider()
    seen, found = _resolved
    if provider is seen:
        return found
    none_installed = isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)
    found = None if none_installed else provider.get_tracer("stepwell")
    _resolved = (provider, found)
    return found


def carrier_of(span: Span) -> TraceContext | None:
    """The span's W3C context, as stored with events and runs (what the W3C propagator would inject)."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    return TraceContext(parent, context.trace_state.to_header() if context.trace_state else "")


def current_carrier() -> TraceContext | None:
    return carrier_of(trace.get_current_span())


_ROOT = otel_context.Context()  # an empty context: a span started in it is a root
_OURS = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")  # the form carrier_of writes
_remotes: dict[tuple[str, str], tuple[otel_context.Context, SpanContext | None]] = {}


def _remote(stored: TraceContext) -> tuple[otel_context.Context, SpanContext | None]:
    """The stored context as a parent (and its span context, for a link), decoded once per distinct
    context: the runs of one batch send share their producer's."""
    key = (stored.traceparent, stored.tracestate)
    found = _remotes.get(key)
    if found is None:
        remote = _decoded(stored)
        if len(_remotes) >= 1024:
            _remotes.clear()
        span_context = trace.get_current_span(remote).get_span_context()
        found = _remotes[key] = (remote, span_context if span_context.is_valid else None)
    return found


def _decoded(stored: TraceContext) -> otel_context.Context:
    """What the W3C propagator extracts. The form `carrier_of` writes, without a tracestate (every run of
    a one-event send has its own), is decoded here in about half the propagator's time (its general
    expression, carrier and getter); anything else goes to the propagator."""
    match = None if stored.tracestate else _OURS.fullmatch(stored.traceparent)
    if match is None or match[1] == "0" * 32 or match[2] == "0" * 16:
        carrier = {"traceparent": stored.traceparent}
        if stored.tracestate:
            carrier["tracestate"] = stored.tracestate
        return _PROPAGATOR.extract(carrier)
    trace_id, span_id, flags = match.groups()
    remote = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    return trace.set_span_in_context(NonRecordingSpan(remote), _ROOT)


@contextlib.contextmanager
def incoming(carrier: Mapping[str, str]) -> Iterator[None]:
    """Make a received W3C context (`traceparent`, `tracestate` headers) the current one, for a send."""
    token = otel_context.attach(_PROPAGATOR.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def producer_span(operation: str, destination: str, count: int) -> Iterator[TraceContext | None]:
    """`send {event}` (or `enqueue {function}`) around a store write; yields the context to store with it."""
    found = tracer()
    if found is None:
        yield None
        return
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": "send",
        "messaging.destination.name": destination,
    }
    if count > 1:
        attributes["messaging.batch.message_count"] = count
    with found.start_as_current_span(
        f"{operation} {destination}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield carrier_of(span)


def continues(claimed: ClaimedRun) -> bool:
    """Whether the attempt's run span continues its stored context (a first attempt, not resumed, not
    a replay) rather than starting a new trace linked to it."""
    stored = claimed.trace
    return stored is not None and claimed.attempt == 1 and not claimed.steps and not stored.link


def push_headers(claimed: ClaimedRun) -> dict[str, str]:
    """The W3C headers a push request carries for `claimed` (none without a stored context), with
    `stepwell-trace` saying whether the endpoint's run span continues the trace or links to it."""
    stored = claimed.trace
    if stored is None:
        return {}
    headers = {"traceparent": stored.traceparent, MODE_HEADER: "continue" if continues(claimed) else "link"}
    if stored.tracestate:
        headers["tracestate"] = stored.tracestate
    return headers


def pushed_trace(headers: Mapping[str, str]) -> tuple[TraceContext | None, bool | None]:
    """What a push endpoint was sent (`headers`: lower-case names): the context and whether to continue
    it (None: not said, so decided by the pull worker's rule on the request as received)."""
    parent = headers.get("traceparent", "")
    if not parent or len(parent) > MAX_TRACE_HEADER:
        return None, None
    state = headers.get("tracestate", "")
    mode = headers.get(MODE_HEADER)
    return TraceContext(parent, state if len(state) <= MAX_TRACE_HEADER else ""), (
        None if mode not in ("continue", "link") else mode == "continue"
    )


def start_run_span(found: trace.Tracer, claimed: ClaimedRun, *, continued: bool | None = None) -> Span:
    """`run {function}` for one attempt: the first attempt continues the producer's trace; a retry, a
    resumption (after a sleep or a wait) or a replay starts a new trace linked to it. `continued`:
    that decision made elsewhere (a push endpoint is told it by the dispatcher)."""
    stored = claimed.trace
    parent: otel_context.Context | None = _ROOT  # a root, unless continued below
    links: list[Link] | None = None
    if stored is not None:
        remote, span_context = _remote(stored)
        if continues(claimed) if continued is None else continued:
            parent = remote
        elif span_context is not None:
            links = [Link(span_context)]
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": claimed.function,
        "stepwell.run_id": claimed.run_id,
        "stepwell.attempt": claimed.attempt,
    }
    if claimed.event.id is not None:
        attributes["messaging.message.id"] = claimed.event.id
    return found.start_span(
        f"run {claimed.function}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
    )


def start_step_span(found: trace.Tracer, step_id: str) -> Span:
    """`step {id}`, a child of the current span (its attempt's). `stepwell.step` is set once started:
    attributes given at the start are shown to the sampler, which costs the SDK some 4 µs more per
    span, and no sampler decides on a step's id. The run's own attributes are on its run span."""
    span = found.start_span(f"step {step_id}", kind=SpanKind.INTERNAL)
    span.set_attribute("stepwell.step", step_id)
    return span


def activate(span: Span) -> object:
    """Make `span` current; returns the token for `deactivate`."""
    return otel_context.attach(trace.set_span_in_context(span))


def deactivate(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


def fail(span: Span, description: str) -> None:
    span.set_status(Status(StatusCode.ERROR, description))
