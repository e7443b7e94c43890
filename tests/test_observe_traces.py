"""Spans with an in-memory exporter: send -> run -> step -> child runs, retries, replays."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import stepwell
from stepwell.observe.tracing import incoming
from tests.conftest import EnvFactory
from tests.observe_helpers import named, span_exporter

app = stepwell.App("traces-test")
attempts: dict[str, int] = {}


@app.function("child")
def child(ctx: stepwell.Context[Any]) -> int:
    return ctx.step.run("work", lambda: 2)


@app.function("parent", trigger=stepwell.on_event("trace.go"))
def parent(ctx: stepwell.Context[Any]) -> int:
    ctx.step.run("prep", lambda: 1)
    return int(ctx.step.invoke("call-child", child, {"x": 1}))


@app.function("flaky", trigger=stepwell.on_event("trace.flaky"), retries=1, backoff=stepwell.Backoff(jitter=0))
def flaky(ctx: stepwell.Context[Any]) -> str:
    attempts[ctx.run_id] = attempts.get(ctx.run_id, 0) + 1
    if attempts[ctx.run_id] == 1:
        raise ValueError("first attempt fails")
    return "ok"


@app.function("spread", trigger=stepwell.on_event("trace.spread"))
def spread(ctx: stepwell.Context[Any]) -> int:
    return ctx.step.fan_out("items", child, [1, 2]).completed


def _parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


def _trace(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.trace_id


def test_send_run_step_and_child_run_share_one_trace(test_env: EnvFactory) -> None:
    exporter = span_exporter()
    with test_env(app) as env:
        env.send("trace.go", {})
        env.run_until_idle()
    spans = exporter.get_finished_spans()
    [send] = named(spans, "send trace.go")
    assert send.kind == SpanKind.PRODUCER and send.attributes is not None
    assert send.attributes["messaging.system"] == "stepwell"
    assert send.attributes["messaging.operation.name"] == "send"
    first, resumed = sorted(named(spans, "run parent"), key=lambda s: s.start_time or 0)
    assert first.kind == SpanKind.CONSUMER and _parent_of(first) == _id(send) and _trace(first) == _trace(send)
    assert first.attributes is not None and first.attributes["messaging.operation.type"] == "process"
    [prep] = named(spans, "step prep")
    assert prep.kind == SpanKind.INTERNAL and _parent_of(prep) == _id(first)
    [child_run] = named(spans, "run child")
    assert _parent_of(child_run) == _id(first) and _trace(child_run) == _trace(send)
    [work] = named(spans, "step work")
    assert _parent_of(work) == _id(child_run)
    # the parent resumed after its child: a new trace, linked to the producer's
    assert _trace(resumed) != _trace(send) and resumed.parent is None
    assert [link.context.span_id for link in resumed.links] == [_id(send)]


def test_a_retry_starts_a_new_trace_linked_to_the_producer(test_env: EnvFactory) -> None:
    exporter = span_exporter()
    with test_env(app) as env:
        env.send("trace.flaky", {})
        env.run_until_idle()
    spans = exporter.get_finished_spans()
    [send] = named(spans, "send trace.flaky")
    first, second = sorted(named(spans, "run flaky"), key=lambda s: s.start_time or 0)
    assert _parent_of(first) == _id(send) and not first.status.is_ok
    assert first.attributes is not None and first.attributes["stepwell.attempt"] == 1
    assert second.parent is None and _trace(second) != _trace(send)
    assert [link.context.span_id for link in second.links] == [_id(send)]
    assert second.attributes is not None and second.attributes["stepwell.outcome"] == "completed"


def test_fan_out_children_carry_the_parents_context(test_env: EnvFactory) -> None:
    exporter = span_exporter()
    with test_env(app) as env:
        env.send("trace.spread", {})
        env.run_until_idle()
    spans = exporter.get_finished_spans()
    [send] = named(spans, "send trace.spread")
    first = min(named(spans, "run spread"), key=lambda s: s.start_time or 0)
    children = named(spans, "run child")
    assert len(children) == 2
    assert all(_parent_of(c) == _id(first) and _trace(c) == _trace(send) for c in children)


def test_a_replay_links_to_the_original_and_an_enqueue_is_a_producer(test_env: EnvFactory) -> None:
    exporter = span_exporter()
    with test_env(app) as env:
        run_id = child.enqueue({"x": 1})
        env.run_until_idle()
        replay = env.app.replay(run_id)
        env.run_until_idle()
        assert env.app.get_run(replay).status == stepwell.RunStatus.COMPLETED
    spans = exporter.get_finished_spans()
    [enqueue] = named(spans, "enqueue child")
    assert enqueue.kind == SpanKind.PRODUCER and len(named(spans, "replay child")) == 1
    original, replayed = sorted(named(spans, "run child"), key=lambda s: s.start_time or 0)
    assert _parent_of(original) == _id(enqueue)
    assert replayed.parent is None and [link.context.span_id for link in replayed.links] == [_id(enqueue)]


def test_send_is_a_child_of_the_current_or_incoming_context(test_env: EnvFactory) -> None:
    exporter = span_exporter()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with test_env(app) as env:
        with incoming({"traceparent": traceparent}):
            env.send("trace.flaky", {})
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("request") as request:
            env.send("trace.flaky", {})
    from_header, from_request = named(exporter.get_finished_spans(), "send trace.flaky")
    assert _trace(from_header) == 0x0AF7651916CD43DD8448EB211C80319C and _parent_of(from_header) == 0xB7AD6B7169203331
    assert _parent_of(from_request) == request.get_span_context().span_id


def test_no_spans_when_tracing_is_off(test_env: EnvFactory) -> None:
    exporter = span_exporter()
    stepwell.observe.configure(tracing=False)
    try:
        with test_env(app) as env:
            env.send("trace.go", {})
            env.run_until_idle()
    finally:
        stepwell.observe.configure(tracing=True)
    assert exporter.get_finished_spans() == ()


class _AskedSampler:
    """The SDK's default sampler (parent-based, every root kept), noting each span it is asked about."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

        self.inner = ParentBased(ALWAYS_ON)
        self.asked: list[tuple[str, int]] = []

    def should_sample(self, parent: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> Any:
        self.asked.append((name, trace_id))
        return self.inner.should_sample(parent, trace_id, name, *args, **kwargs)

    def get_description(self) -> str:
        return "asked"


def test_an_unsampled_trace_records_nothing_and_makes_no_step_spans(test_env: EnvFactory) -> None:
    """The producer's sampling decision (flags 00) holds for its runs, their steps and their child runs;
    a run its sampler dropped does not even ask for its steps' spans."""
    exporter = span_exporter()
    stepwell.observe.configure(tracing=True)
    found = stepwell.observe.tracing.tracer()
    assert found is not None
    sampler, kept = _AskedSampler(), found.sampler  # type: ignore[attr-defined]
    found.sampler = sampler  # type: ignore[attr-defined]
    unsampled = 0x0AF7651916CD43DD8448EB211C80319C
    try:
        with test_env(app) as env:
            with incoming({"traceparent": f"00-{unsampled:032x}-b7ad6b7169203331-00"}):
                env.send("trace.go", {})
            env.run_until_idle()
    finally:
        found.sampler = kept  # type: ignore[attr-defined]
    recorded = exporter.get_finished_spans()
    assert not [span for span in recorded if _trace(span) == unsampled]
    # the parent resumed after its child: a new trace (linked), sampled on its own, with its steps
    assert [span.name for span in recorded] == ["run parent"]
    names = [name for name, trace_id in sampler.asked if trace_id == unsampled]
    assert "run parent" in names and "run child" in names, names
    assert not [name for name in names if name.startswith("step ")], names
    first_run = next(trace_id for name, trace_id in sampler.asked if name == "run parent")
    child_run = next(trace_id for name, trace_id in sampler.asked if name == "run child")
    assert first_run == child_run == unsampled  # the context went on, unrecorded


def test_a_sampled_trace_asks_for_its_steps_spans(test_env: EnvFactory) -> None:
    exporter = span_exporter()
    with test_env(app) as env:
        env.send("trace.go", {})
        env.run_until_idle()
    assert named(exporter.get_finished_spans(), "step prep") and named(exporter.get_finished_spans(), "step work")


def test_the_stored_context_is_what_the_w3c_propagator_writes() -> None:
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from stepwell.observe.tracing import carrier_of

    for flags in (TraceFlags.DEFAULT, TraceFlags.SAMPLED):
        for state in (TraceState(), TraceState([("k", "v"), ("vendor", "x-1")])):
            span = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD, True, flags, state))
            carrier: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
            stored = carrier_of(span)
            assert stored is not None and stored.traceparent == carrier["traceparent"]
            assert stored.tracestate == carrier.get("tracestate", "")
    assert carrier_of(trace.INVALID_SPAN) is None


def test_a_pushed_run_continues_the_producers_trace_over_http(database_url: str) -> None:
    """Push mode: the dispatcher sends `traceparent`; the endpoint's run spans (one per request, one
    request per checkpoint) are children of the producer's `send`, and its step spans theirs."""
    import threading
    import time

    import uvicorn

    from tests.push.harness import DispatcherThread

    exporter = span_exporter()
    web = stepwell.App("traces-web", database_url=database_url)

    @web.function("pushed", trigger=stepwell.on_event("trace.push"), retries=0)
    def pushed(ctx: stepwell.Context[Any]) -> int:
        return int(ctx.step.run("work", lambda: 2)) + int(ctx.step.run("more", lambda: 3))

    server = uvicorn.Server(uvicorn.Config(web.asgi(dev=True), host="127.0.0.1", port=0, lifespan="off",
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        web.register()
        web.store.set_push_endpoints(web.name, {"pushed": f"http://127.0.0.1:{port}/"})
        with DispatcherThread(database_url):
            [run] = web.runs(event_id=web.send("trace.push", {}))
            assert web.wait(run.id, timeout=30).output == 5
    finally:
        server.should_exit = True
        thread.join(10)
        web.close()
    spans = exporter.get_finished_spans()
    [send] = named(spans, "send trace.push")
    runs = named(spans, "run pushed")
    assert len(runs) == 3, "one request per step, and one that completes"
    for span in runs:
        assert span.kind == SpanKind.CONSUMER and _parent_of(span) == _id(send) and _trace(span) == _trace(send)
    [work] = named(spans, "step work")
    [more] = named(spans, "step more")
    assert {_parent_of(work), _parent_of(more)} <= {_id(span) for span in runs} and _trace(work) == _trace(send)
    outcomes = sorted(str((span.attributes or {}).get("stepwell.outcome")) for span in runs)
    assert outcomes == ["checkpoint", "checkpoint", "completed"]


def test_push_headers_tell_the_endpoint_to_continue_a_first_attempt_and_link_a_retry() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from stepwell.model.records import Event
    from stepwell.observe.tracing import push_headers, pushed_trace
    from stepwell.store.base import ClaimedRun, Lease, TraceContext

    now = datetime.now(UTC)
    context = TraceContext("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=1")
    fresh = ClaimedRun(Lease("r", "t", now + timedelta(seconds=30)), "f", 1, 3, Event("e", "go", {}, now), now,
                       trace=context)  # fmt: skip
    assert push_headers(fresh) == {
        "traceparent": context.traceparent, "tracestate": "vendor=1", "stepwell-trace": "continue"
    }  # fmt: skip
    assert pushed_trace(push_headers(fresh)) == (context, True)
    assert pushed_trace(push_headers(replace(fresh, attempt=2))) == (context, False)
    assert push_headers(replace(fresh, trace=None)) == {} and pushed_trace({}) == (None, None)
    assert pushed_trace({"traceparent": "x" * 600}) == (None, None)
