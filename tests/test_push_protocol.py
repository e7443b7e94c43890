"""The push protocol without HTTP: the endpoint answers one new step per request, as documents that round-trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

import stepwell
from stepwell.model.records import ChildResult, ErrorInfo, Event, RunStatus, Step, StepKind, StepStatus
from stepwell.push import protocol
from stepwell.push.endpoint import Endpoint
from stepwell.push.signing import Verifier
from stepwell.store.base import ClaimedRun, Lease, RunLogLine

NOW = datetime(2030, 1, 1, tzinfo=UTC)
app = stepwell.App("proto", database_url="sqlite:///:memory:")
calls: list[str] = []


@app.function("two-steps")
def two_steps(ctx: stepwell.Context) -> int:
    a = ctx.step.run("a", lambda: calls.append("a") or 1)
    b = ctx.step.run("b", lambda: calls.append("b") or 2)
    ctx.step.sleep("nap", "1h")
    return a + b


@app.function("reduce")
def reduce(ctx: stepwell.Context) -> list[int | None]:
    fan = ctx.step.fan_out("all", "two-steps", [{}, {}, {}])
    return list(fan.results(page_size=2))


endpoint = Endpoint(app.registry, app.clock, Verifier.dev(), max_event_bytes=1 << 20, max_output_bytes=1 << 20)


def push(steps: tuple[Step, ...]) -> protocol.PushResponse:
    claimed = ClaimedRun(
        Lease("run-1", "t", NOW + timedelta(seconds=30)), "two-steps", 1, 4, Event("e", "go", {}, NOW), NOW, steps
    )
    answer = endpoint.handle_sync("POST", {}, protocol.encode_request(protocol.PushRequest(claimed)))
    assert answer.status == 200, answer.body
    return protocol.decode_response(answer.body, "run-1")


def stored(op: protocol.Op) -> Step:
    assert isinstance(op, protocol.RecordStep)
    write = op.step
    output = None if write.output is None else orjson.loads(write.output)
    return Step(write.step_id, write.kind, write.status, 1, output, position=write.position, wake_at=write.wake_at)


def test_each_request_executes_one_new_step_and_stops_until_it_is_stored() -> None:
    calls.clear()
    first = push(())
    assert first.result == protocol.Checkpoint() and calls == ["a"]
    [op] = first.ops
    assert (op.step.step_id, op.step.status, op.step.output) == ("a", StepStatus.COMPLETED, b"1")  # type: ignore[union-attr]
    second = push((stored(op),))
    assert second.result == protocol.Checkpoint() and calls == ["a", "b"]  # a replayed from the request, not run
    third = push((stored(op), stored(second.ops[0])))
    [sleep] = third.ops
    assert isinstance(sleep, protocol.RecordStep) and sleep.step.kind is StepKind.SLEEP
    assert third.result == protocol.Suspended(NOW + timedelta(hours=1), False)
    napped = Step("nap", StepKind.SLEEP, StepStatus.COMPLETED, 1, position=2)
    last = push((stored(op), stored(second.ops[0]), napped))
    assert last == protocol.PushResponse((), protocol.Completed(b"3")) and calls == ["a", "b"]


def test_a_reordered_replay_is_a_non_retriable_failure_naming_the_step() -> None:
    wrong = Step("b", StepKind.RUN, StepStatus.COMPLETED, 1, 2, position=0)
    response = push((wrong,))
    assert isinstance(response.result, protocol.Failed) and not response.result.retriable
    assert "NonDeterminism" in response.result.error.type


def test_a_finished_fan_outs_children_are_asked_for_then_read_from_the_request() -> None:
    fanned = Step(
        "all",
        StepKind.FAN_OUT,
        StepStatus.COMPLETED,
        1,
        {"total": 3, "completed": 2, "failed": 1, "cancelled": 0},
        position=0,
    )
    claimed = ClaimedRun(Lease("run-1", "t", NOW), "reduce", 1, 1, Event("e", "go", {}, NOW), NOW, (fanned,))
    answer = endpoint.handle_sync("POST", {}, protocol.encode_request(protocol.PushRequest(claimed)))
    asked = protocol.decode_response(answer.body, "run-1")
    assert asked == protocol.PushResponse((), protocol.ReadChildren("all"))
    children = (
        ChildResult(0, "c0", RunStatus.COMPLETED, 3),
        ChildResult(1, "c1", RunStatus.FAILED, None, ErrorInfo("ValueError", "no")),
        ChildResult(2, "c2", RunStatus.COMPLETED, {"x": [1]}),
    )
    request = protocol.PushRequest(claimed, {}, {"all": children})
    assert protocol.decode_request(protocol.encode_request(request)).children == {"all": children}
    answer = endpoint.handle_sync("POST", {}, protocol.encode_request(request))
    assert protocol.decode_response(answer.body, "run-1").result == protocol.Completed(b'[3,null,{"x":[1]}]')


def test_log_lines_in_an_answer_belong_to_the_pushed_run_whatever_the_document_says() -> None:
    line = RunLogLine("someone-else", 2, 0, 1, NOW, "INFO", "hello", None)
    body = protocol.encode_response(protocol.PushResponse((), protocol.Checkpoint(), (line,)))
    [decoded] = protocol.decode_response(body, "run-1").logs
    assert decoded == RunLogLine("run-1", 2, 0, 1, NOW, "INFO", "hello", None)
    bad = body.replace(b'"seq":1', b'"seq":"one"')
    try:
        protocol.decode_response(bad, "run-1")
    except protocol.ProtocolError as error:
        assert "logs[0].seq" in str(error)
    else:
        raise AssertionError("a bad log line was accepted")


def test_documents_round_trip() -> None:
    response = push(())
    assert protocol.decode_response(protocol.encode_response(response), "run-1") == response
    for bad in (b"[]", b'{"protocol": "other"}', b"not json", b'{"protocol": "stepwell.push/1", "ops": [{"op": "x"}]}'):
        try:
            protocol.decode_response(bad, "run-1")
        except protocol.ProtocolError as error:
            assert str(error)
        else:
            raise AssertionError(bad)


def test_development_mode_answers_loopback_clients_only() -> None:
    import io

    from stepwell.push.adapters import WsgiEndpoint

    wsgi = WsgiEndpoint(endpoint)
    body = protocol.encode_request(
        protocol.PushRequest(
            ClaimedRun(Lease("r", "t", NOW), "two-steps", 1, 1, Event("e", "go", {}, NOW), NOW),
        )
    )
    statuses: list[str] = []

    def call(remote: str, **headers: str) -> bytes:
        environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
        environ = {**environ, "HTTP_HOST": "127.0.0.1:8000", **headers, "REMOTE_ADDR": remote}
        return b"".join(wsgi(environ, lambda status, headers: statuses.append(status)))

    assert b"dev_mode" in call("10.0.0.5") and statuses[-1].startswith("403")
    call("127.0.0.1")
    assert statuses[-1].startswith("200")
    call("::1", HTTP_HOST="localhost:8000")
    assert statuses[-1].startswith("200")
    # a loopback peer is not enough (finding P3 of the review of 2026-11-29): a proxy on this host (as a WSGI
    # server that passes forwarding headers on shows them), a page re-pointed at 127.0.0.1, no Host at all
    for headers in (
        {"HTTP_FORWARDED": "for=203.0.113.7"},
        {"HTTP_X_FORWARDED_FOR": "203.0.113.7"},
        {"HTTP_X_REAL_IP": "203.0.113.7"},
        {"HTTP_HOST": "rebound.evil.example"},
        {"HTTP_HOST": ""},
    ):
        assert b"misdirected" in call("127.0.0.1", **headers) and statuses[-1].startswith("421"), headers
