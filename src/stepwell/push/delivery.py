"""One run, pushed: POST it, store what the endpoint answered, and ask again until it settles.

The loop holds the run's lease throughout (the dispatcher's heartbeat renews it): a `checkpoint`
stores the new step and sends the run again with it memoized; anything else becomes one
settlement, decided by the same `outcomes.decide` the pull worker uses. Transport failures are
classified here: a refused connection gives the run back without counting an attempt (the
function never ran), anything after the request was sent (timeout, reset, 5xx, bad answer)
counts as a failed attempt, retried with the function's backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from urllib.parse import SplitResult

import httpx
import orjson

from stepwell.errors import StepwellError
from stepwell.model.ids import new_token
from stepwell.model.records import ChildResult, ErrorInfo, StepKind, StepStatus
from stepwell.model.retry import RetryPolicy
from stepwell.observe.settings import SETTINGS
from stepwell.push import protocol
from stepwell.push.apply import apply_op, with_step
from stepwell.push.guard import Guard, IPAddress, pinned_url
from stepwell.push.http1 import ConnectFailed, Http1Client, HttpFailure, TooLarge
from stepwell.push.protocol import (
    Checkpoint,
    Completed,
    Failed,
    PushRequest,
    PushResponse,
    ReadChildren,
    Suspended,
)
from stepwell.push.signing import SignatureError, Signer, Verifier
from stepwell.runtime import outcomes
from stepwell.runtime.engine import Engine
from stepwell.store.base import ClaimedRun, Release, RunLogLine, Settlement, Suspend

log = logging.getLogger("stepwell.push")


class EndpointUnreachable(StepwellError):
    """The endpoint could not be reached at all: the function did not run."""


class EndpointFailed(StepwellError):
    """The request reached the endpoint but no valid answer came back: the attempt counts."""


class ChildrenTooLarge(StepwellError):
    """A fan-out's children's results do not fit in one push request: the run fails (not retried)."""


CHILDREN_PAGE = 1000
MAX_CHILDREN_BYTES = 32 * 1024 * 1024  # under the endpoint's 64 MiB request cap, beside the steps


@dataclass(frozen=True, slots=True)
class Transport:
    """Signs, POSTs and checks one exchange: `http://` endpoints through the lean keep-alive HTTP/1.1
    client (push/http1.py), `https://` ones through httpx (TLS, HTTP/2 when offered)."""

    client: httpx.AsyncClient
    guard: Guard
    signer: Signer
    verifier: Verifier  # checks the endpoint's signed answers
    max_response_bytes: int
    timeout: float = 30.0  # seconds for one request, answer included (the httpx client has its own)
    plain: Http1Client = field(default_factory=Http1Client)
    connect_retries: int = 2

    async def post(
        self, url: str, body: bytes, run_id: str, now: object, extra: Mapping[str, str] | None = None
    ) -> PushResponse:
        """`extra`: more headers (the run's W3C trace context, `observe.tracing.push_headers`)."""
        parts, address = await self.guard.resolve(url)
        message_id = f"msg_{new_token()[:24]}"
        headers = {"content-type": "application/json", "host": parts.netloc, "user-agent": "stepwell-push/1"}
        headers.update(extra or {})
        if self.signer.keys:
            headers.update(self.signer.headers(message_id, body, now))  # type: ignore[arg-type]
        for attempt in range(self.connect_retries + 1):
            try:
                if parts.scheme == "http":
                    status, answer_headers, raw = await self._plain(parts, address, url, body, headers)
                else:
                    status, answer_headers, raw = await self._httpx(parts, address, url, body, headers)
                return self._answer(url, status, answer_headers, raw, run_id, now, message_id)
            except (httpx.ConnectError, ConnectFailed) as error:
                if attempt == self.connect_retries:
                    raise EndpointUnreachable(f"endpoint {url} unreachable: {error}") from None
                await asyncio.sleep(0.05 * 4**attempt)
        raise AssertionError("unreachable")

    async def _plain(
        self, parts: SplitResult, address: IPAddress, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.plain.post(
                    str(address), parts.port or 80, target, headers, body, max_bytes=self.max_response_bytes
                )
        except ConnectFailed:
            raise
        except TimeoutError:
            raise EndpointFailed(f"endpoint {url} timed out (after {self.timeout:g}s)") from None
        except TooLarge:
            raise EndpointFailed(
                f"endpoint {url}: answer larger than {self.max_response_bytes} bytes (max_response_bytes)"
            ) from None
        except (HttpFailure, OSError, ValueError) as error:
            raise EndpointFailed(f"endpoint {url} failed: {type(error).__name__}: {error}") from None
        return answer.status, answer.headers, answer.body

    async def _httpx(
        self, parts: SplitResult, address: IPAddress, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        target = pinned_url(parts, address)
        extensions: dict[str, object] = {"sni_hostname": parts.hostname}
        try:
            request = self.client.build_request("POST", target, content=body, headers=headers, extensions=extensions)
            response = await self.client.send(request, stream=True, follow_redirects=False)
            try:
                raw = await _read_capped(response, self.max_response_bytes, url)
            finally:
                await response.aclose()
        except httpx.ConnectError:
            raise
        except httpx.TimeoutException as error:
            raise EndpointFailed(f"endpoint {url} timed out ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise EndpointFailed(f"endpoint {url} failed: {type(error).__name__}: {error}") from None
        return response.status_code, response.headers, raw

    def _answer(
        self, url: str, status: int, headers: Mapping[str, str], raw: bytes, run_id: str, now: object, message_id: str
    ) -> PushResponse:
        """The endpoint signs its answer with the request's id: an answer signed for another request
        (a recorded answer, replayed by anyone on the path) is refused, and the attempt counts."""
        if 300 <= status < 400:
            raise EndpointFailed(f"endpoint {url} answered a redirect ({status}); redirects are not followed")
        if status != 200:  # the body only goes into the error message: it need not be trusted
            raise EndpointFailed(f"endpoint {url} answered {status}: {raw[:300].decode(errors='replace')}")
        try:
            answered = self.verifier.verify(headers, raw, now)  # type: ignore[arg-type]
        except SignatureError as error:
            raise EndpointFailed(f"endpoint {url}: answer refused: {error}") from None
        if self.verifier.keys and answered != message_id:
            raise EndpointFailed(
                f"endpoint {url}: answer refused: signed for another request "
                f"(webhook-id {answered[:60]!r}, the request's is {message_id!r})"
            )
        try:
            return protocol.decode_response(raw, run_id)
        except protocol.ProtocolError as error:
            raise EndpointFailed(f"endpoint {url}: bad answer: {error}") from None


async def _read_capped(response: httpx.Response, cap: int, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise EndpointFailed(f"endpoint {url}: answer larger than {cap} bytes (max_response_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def fan_out_counts(engine: Engine, claimed: ClaimedRun) -> dict[str, object]:
    """The counts of every waiting fan-out step: the endpoint cannot read them from a database."""
    return {
        step.id: engine.store.fan_out_counts(claimed.run_id, step.id)
        for step in claimed.steps
        if step.kind is StepKind.FAN_OUT and step.status is StepStatus.WAITING
    }


def settle_response(
    claimed: ClaimedRun, response: PushResponse, last_step_wake: object, policy: RetryPolicy, max_output: int
) -> Settlement | None:
    """The settlement for a final answer (not a checkpoint)."""
    match response.result:
        case Completed(output):
            if len(output) > max_output:
                error = ErrorInfo("stepwell.errors.OutputTooLarge", f"output of {len(output)} bytes over {max_output}")
                return outcomes.decide(outcomes.Failed(error, retriable=False), claimed, policy)
            return outcomes.decide(outcomes.Completed(output), claimed, policy)
        case Suspended(until, waiting):
            wake = last_step_wake if last_step_wake is not None else until
            return Suspend(claimed.lease, wake, waiting)  # type: ignore[arg-type]
        case Failed(error, retriable, retry_after):
            return outcomes.decide(outcomes.Failed(error, retriable, retry_after), claimed, policy)
        case Checkpoint() | ReadChildren():
            raise AssertionError("a checkpoint is not final")
    raise AssertionError(response.result)


def transport_failure(claimed: ClaimedRun, error: StepwellError, policy: RetryPolicy) -> Settlement | None:
    if isinstance(error, EndpointUnreachable):
        return Release(claimed.lease)
    info = ErrorInfo("stepwell.push.EndpointFailed", str(error))
    return outcomes.decide(outcomes.Failed(info, retriable=True), claimed, policy)


def read_children(engine: Engine, run_id: str, step_id: str, cap: int) -> tuple[ChildResult, ...]:
    """Every child of the run's fan-out `step_id`, in item order, a page at a time; at most `cap` bytes of results."""
    children: list[ChildResult] = []
    size, after = 0, -1
    while True:
        page = engine.store.fan_out_results(run_id, step_id, after=after, limit=CHILDREN_PAGE)
        for child in page:
            size += 64 + len(orjson.dumps(child.output if child.error is None else child.error.to_json()))
        if size > cap:
            raise ChildrenTooLarge(
                f"fan_out({step_id!r}): the children's results are over {cap} bytes, more than one push request "
                "carries; reduce them in a pulled function (no URL, run by a worker) that this one invokes, "
                "or return smaller outputs from the children"
            )
        children.extend(page)
        if len(page) < CHILDREN_PAGE:
            return tuple(children)
        after = page[-1].index


def bounded(lines: tuple[RunLogLine, ...]) -> list[RunLogLine]:
    """The endpoint's lines within this process's bounds (lines per attempt, characters per line)."""
    limit = SETTINGS.log_line_chars
    kept = lines[-SETTINGS.log_lines_per_attempt :]
    return [line if len(line.message) <= limit else replace(line, message=line.message[:limit]) for line in kept]


def too_large(claimed: ClaimedRun, error: ChildrenTooLarge, policy: RetryPolicy) -> Settlement | None:
    info = ErrorInfo("stepwell.push.ChildrenTooLarge", str(error))
    return outcomes.decide(outcomes.Failed(info, retriable=False), claimed, policy)


@dataclass(slots=True)
class Exchange:
    """The state of one run's exchange with its endpoint across checkpoints."""

    claimed: ClaimedRun
    requests: int = 0
    children: dict[str, tuple[ChildResult, ...]] = field(default_factory=dict)  # read for the endpoint, kept
    max_children_bytes: int = MAX_CHILDREN_BYTES

    def needs_store(self) -> bool:
        return any(step.kind is StepKind.FAN_OUT and step.status is StepStatus.WAITING for step in self.claimed.steps)

    def request(self, engine: Engine) -> bytes:
        counts = fan_out_counts(engine, self.claimed)
        self.requests += 1
        return protocol.encode_request(PushRequest(self.claimed, counts, self.children))  # type: ignore[arg-type]

    def writes(self, response: PushResponse) -> bool:
        """Whether storing `response` touches the store (else `store` needs no thread)."""
        return bool(response.ops or response.logs) or isinstance(response.result, ReadChildren)

    def store(self, engine: Engine, response: PushResponse) -> tuple[object, bool]:
        """Write the log lines, then the ops; returns (the last written step's wake time, whether to ask
        again at once). Lines first, as a pulled attempt writes them before the step they precede."""
        if response.logs:
            engine.store.append_run_logs(bounded(response.logs), max_lines=SETTINGS.log_lines_per_run)
        wake = None
        again = isinstance(response.result, Checkpoint)
        for op in response.ops:
            applied = apply_op(engine, self.claimed, op)
            if applied.step is not None:
                self.claimed = with_step(self.claimed, applied.step)
                wake = applied.step.wake_at
            if applied.sealed is not None and applied.sealed.done:
                again = True  # every child finished before the seal: go on at once, as the pull worker does
        if isinstance(response.result, ReadChildren):
            step_id = response.result.step_id
            if step_id in self.children:
                raise EndpointFailed(f"the endpoint asked twice for the children of fan_out({step_id!r})")
            self.children[step_id] = read_children(engine, self.claimed.run_id, step_id, self.max_children_bytes)
            again = True
        return wake, again


RETRY_NOW = timedelta(0)
