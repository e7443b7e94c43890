"""The web app's side of push mode: verify, replay one run against the steps it was sent, answer.

Framework-free: `Endpoint.handle(method, headers, body)` returns status, headers and body, and the
ASGI and WSGI adapters (`push/adapters.py`) only move bytes. The replay is the runtime's own
executor and step API (`runtime/executor.py`, `runtime/steps.py`) over a `StepRecorder` instead
of a store, so replay order, memoization, non-determinism checks and error mapping are the pull
worker's, not a second engine's. `ctx.log` lines are buffered in an attempt scope as in a pulled
attempt and go back in the answer; the dispatcher stores them under the same keys.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import orjson

from stepwell.clock import Clock
from stepwell.model.ids import new_token
from stepwell.observe import scope, tracing
from stepwell.observe.attempt import PushedAttempt, observe_pushed
from stepwell.push import protocol
from stepwell.push.protocol import (
    Checkpoint,
    Completed,
    Failed,
    PushRequest,
    PushResponse,
    ReadChildren,
    Result,
    Suspended,
)
from stepwell.push.recorder import RecordingEngine, StepRecorder
from stepwell.push.seen import SeenIds
from stepwell.push.signing import SignatureError, Signer, Verifier
from stepwell.runtime import outcomes
from stepwell.runtime.executor import execute_async, execute_sync
from stepwell.runtime.registry import Registry
from stepwell.store.base import RunLogLine

if TYPE_CHECKING:
    from stepwell.model.function import FunctionSpec

log = logging.getLogger("stepwell.push")
JSON_HEADERS = {"content-type": "application/json"}
MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Endpoint:
    """Serves the functions of one app's registry. `signer` signs responses with the same keys."""

    def __init__(
        self,
        registry: Registry,
        clock: Clock,
        verifier: Verifier,
        *,
        max_event_bytes: int,
        max_output_bytes: int,
        threads: int = 32,
    ) -> None:
        self.registry, self.clock, self.verifier = registry, clock, verifier
        self.signer = Signer(verifier.keys)
        self.max_event_bytes, self.max_output_bytes = max_event_bytes, max_output_bytes
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stepwell-push")
        self.seen = SeenIds(2 * verifier.tolerance)  # replays refused (push/seen.py)

    def _answer(self, status: int, body: bytes, message_id: str) -> Answer:
        headers = dict(JSON_HEADERS)
        if self.signer.keys:
            headers.update(self.signer.headers(message_id, body, self.clock.now()))
        return Answer(status, headers, body)

    def refusal(self, status: int, code: str, message: str, message_id: str = "") -> Answer:
        body = orjson.dumps({"error": {"code": code, "message": message}})
        return self._answer(status, body, message_id or f"msg_{new_token()[:16]}")

    def precheck(self, method: str, headers: Mapping[str, str]) -> Answer | None:
        """What can be refused before the body is read (both adapters call it first): the method, a
        declared length over `MAX_REQUEST_BYTES`, and the signature's headers (present, well-formed,
        within the tolerance, a key configured). An unsigned or stale client with a huge body gets
        its answer at once, without the endpoint buffering a byte of that body."""
        if method != "POST":
            return self.refusal(405, "method_not_allowed", "push endpoints take POST only")
        try:
            self.verifier.precheck(headers, self.clock.now())
        except SignatureError as error:
            log.warning("push request refused before its body was read: %s", error)
            return self.refusal(401, "bad_signature", str(error))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
            return self.refusal(413, "too_large", f"request body over {MAX_REQUEST_BYTES} bytes")
        return None

    def check(self, method: str, headers: Mapping[str, str], body: bytes) -> tuple[Answer | None, str]:
        """Signature, replay and shape checks shared by both adapters: an Answer when refused, else the message id.

        A message id is remembered once its signature is good; the same id again is a replay (409)."""
        if method != "POST":
            return self.refusal(405, "method_not_allowed", "push endpoints take POST only"), ""
        if len(body) > MAX_REQUEST_BYTES:
            return self.refusal(413, "too_large", f"request body over {MAX_REQUEST_BYTES} bytes"), ""
        try:
            message_id = self.verifier.verify(headers, body, self.clock.now())
        except SignatureError as error:
            log.warning("push request refused: %s", error)
            return self.refusal(401, "bad_signature", str(error)), ""
        if self.verifier.keys and not self.seen.first_time(message_id, self.clock.now()):
            log.warning("push request refused: message id %r was already received (a replay)", message_id)
            message = f"message id {message_id!r} was already received: a replayed request runs nothing"
            return self.refusal(409, "duplicate", message, message_id), ""
        return None, message_id

    def _prepare(self, body: bytes, message_id: str) -> tuple[Answer | None, PushRequest | None, FunctionSpec | None]:
        try:
            request = protocol.decode_request(body)
        except protocol.ProtocolError as error:
            return self.refusal(400, "bad_request", str(error), message_id), None, None
        spec = self.registry.get(request.claimed.function)
        if spec is None:
            name = request.claimed.function
            return (
                self.refusal(404, "unknown_function", f"function {name!r} is not served here", message_id),
                None,
                None,
            )
        return None, request, spec

    def _engine(self, recorder: StepRecorder) -> RecordingEngine:
        return RecordingEngine(
            self.registry,
            recorder,  # type: ignore[arg-type]  # the verbs the step API calls, nothing else
            self.clock,
            self.max_event_bytes,
            self.max_output_bytes,
            recorder=recorder,
        )

    def _respond(
        self,
        recorder: StepRecorder,
        outcome: outcomes.Outcome,
        lines: list[RunLogLine],
        message_id: str,
        pushed: PushedAttempt,
    ) -> Answer:
        result = _result(recorder, outcome)
        pushed.ended(type(result).__name__.lower(), isinstance(result, Failed))
        response = PushResponse(tuple(recorder.ops), result, tuple(lines))
        return self._answer(200, protocol.encode_response(response), message_id)

    def _attempt(self, request: PushRequest) -> scope.AttemptScope:
        """The replay's attempt scope: `ctx.log` buffers its lines there, keyed as in a pulled attempt."""
        claimed = request.claimed
        return scope.AttemptScope(
            claimed.run_id, claimed.function, claimed.attempt, claimed.event.id, now=self.clock.now
        )

    def _accept(
        self, method: str, headers: Mapping[str, str], body: bytes
    ) -> Answer | tuple[PushRequest, FunctionSpec, StepRecorder, RecordingEngine, str]:
        """A refusal to answer at once, or what one replay needs: both handlers start here."""
        refused, message_id = self.check(method, headers, body)
        if refused is not None:
            return refused
        refused, request, spec = self._prepare(body, message_id)
        if refused is not None:
            return refused
        assert request is not None and spec is not None
        recorder = StepRecorder(request)
        return request, spec, recorder, self._engine(recorder), message_id

    def handle_sync(self, method: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """For WSGI: runs the function on the calling thread (async functions on a private loop)."""
        accepted = self._accept(method, headers, body)
        if isinstance(accepted, Answer):
            return accepted
        request, spec, recorder, engine, message_id = accepted
        attempt = self._attempt(request)
        token = scope.ATTEMPT.set(attempt)
        try:
            with _observed(request, attempt, headers) as pushed:
                if spec.is_async:
                    outcome = asyncio.run(execute_async(spec, request.claimed, engine))
                else:
                    outcome = execute_sync(spec, request.claimed, engine)
                return self._respond(recorder, outcome, attempt.take_lines(), message_id, pushed)
        finally:
            scope.ATTEMPT.reset(token)

    async def handle(self, method: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """For ASGI: async functions on the running loop, sync ones on this endpoint's threads."""
        accepted = self._accept(method, headers, body)
        if isinstance(accepted, Answer):
            return accepted
        request, spec, recorder, engine, message_id = accepted
        attempt = self._attempt(request)
        token = scope.ATTEMPT.set(attempt)
        try:
            with _observed(request, attempt, headers) as pushed:  # before copy_context: the threads see the span
                if spec.is_async:
                    outcome = await execute_async(spec, request.claimed, engine)
                else:
                    context = contextvars.copy_context()
                    loop = asyncio.get_running_loop()
                    claimed = request.claimed
                    outcome = await loop.run_in_executor(self._pool, context.run, execute_sync, spec, claimed, engine)
                return self._respond(recorder, outcome, attempt.take_lines(), message_id, pushed)
        finally:
            scope.ATTEMPT.reset(token)


def _observed(request: PushRequest, attempt: scope.AttemptScope, headers: Mapping[str, str]) -> PushedAttempt:
    """The request's run span, continuing (or linking to) the trace context the dispatcher sent."""
    stored, continued = tracing.pushed_trace(headers)
    claimed = request.claimed if stored is None else replace(request.claimed, trace=stored)
    return observe_pushed(claimed, attempt, continued)


def _result(recorder: StepRecorder, outcome: outcomes.Outcome) -> Result:
    """The executor's Outcome in protocol terms; a checkpoint wins over what the unwinding looked like."""
    if recorder.checkpointed:
        return Checkpoint()
    if recorder.read is not None:
        return ReadChildren(recorder.read)
    match outcome:
        case outcomes.Completed(output):
            return Completed(output)
        case outcomes.Suspended(until, waiting):
            return Suspended(until, waiting)
        case outcomes.Failed(error, retriable, retry_after):
            return Failed(error, retriable, retry_after)
        case outcomes.Interrupted(error):
            return Failed(error, True)
        case outcomes.LeaseGone():
            return Checkpoint()  # cannot happen without a store; asking again is harmless
    raise AssertionError(outcome)
