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
from dataclasses import dataclass
from datetime import timedelta

import httpx

from stepwell.errors import StepwellError
from stepwell.model.ids import new_token
from stepwell.model.records import ErrorInfo, StepKind, StepStatus
from stepwell.model.retry import RetryPolicy
from stepwell.push import protocol
from stepwell.push.apply import apply_op, with_step
from stepwell.push.guard import Guard, pinned_url
from stepwell.push.protocol import Checkpoint, Completed, Failed, PushRequest, PushResponse, Suspended
from stepwell.push.signing import SignatureError, Signer, Verifier
from stepwell.runtime import outcomes
from stepwell.runtime.engine import Engine
from stepwell.store.base import ClaimedRun, Release, Settlement, Suspend

log = logging.getLogger("stepwell.push")


class EndpointUnreachable(StepwellError):
    """The endpoint could not be reached at all: the function did not run."""


class EndpointFailed(StepwellError):
    """The request reached the endpoint but no valid answer came back: the attempt counts."""


@dataclass(frozen=True, slots=True)
class Transport:
    client: httpx.AsyncClient
    guard: Guard
    signer: Signer
    verifier: Verifier  # checks the endpoint's signed answers
    max_response_bytes: int
    connect_retries: int = 2

    async def post(self, url: str, body: bytes, run_id: str, now: object) -> PushResponse:
        parts, address = await self.guard.resolve(url)
        target = pinned_url(parts, address)
        message_id = f"msg_{new_token()[:24]}"
        headers = {"content-type": "application/json", "host": parts.netloc, "user-agent": "stepwell-push/1"}
        if self.signer.keys:
            headers.update(self.signer.headers(message_id, body, now))  # type: ignore[arg-type]
        extensions: dict[str, object] = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        for attempt in range(self.connect_retries + 1):
            try:
                return await self._exchange(target, url, body, headers, extensions, run_id, now)
            except httpx.ConnectError as error:
                if attempt == self.connect_retries:
                    raise EndpointUnreachable(f"endpoint {url} unreachable: {error}") from None
                await asyncio.sleep(0.05 * 4**attempt)
        raise AssertionError("unreachable")

    async def _exchange(
        self, target: str, url: str, body: bytes, headers: dict[str, str], extensions: dict[str, object],
        run_id: str, now: object,
    ) -> PushResponse:  # fmt: skip
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
        if 300 <= response.status_code < 400:
            raise EndpointFailed(
                f"endpoint {url} answered a redirect ({response.status_code}); redirects are not followed"
            )
        if response.status_code != 200:  # the body only goes into the error message: it need not be trusted
            raise EndpointFailed(
                f"endpoint {url} answered {response.status_code}: {raw[:300].decode(errors='replace')}"
            )
        try:
            self.verifier.verify(response.headers, raw, now)  # type: ignore[arg-type]
        except SignatureError as error:
            raise EndpointFailed(f"endpoint {url}: answer refused: {error}") from None
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
        case Checkpoint():
            raise AssertionError("a checkpoint is not final")
    raise AssertionError(response.result)


def transport_failure(claimed: ClaimedRun, error: StepwellError, policy: RetryPolicy) -> Settlement | None:
    if isinstance(error, EndpointUnreachable):
        return Release(claimed.lease)
    info = ErrorInfo("stepwell.push.EndpointFailed", str(error))
    return outcomes.decide(outcomes.Failed(info, retriable=True), claimed, policy)


@dataclass(slots=True)
class Exchange:
    """The state of one run's exchange with its endpoint across checkpoints."""

    claimed: ClaimedRun
    requests: int = 0

    def needs_store(self) -> bool:
        return any(step.kind is StepKind.FAN_OUT and step.status is StepStatus.WAITING for step in self.claimed.steps)

    def request(self, engine: Engine) -> bytes:
        counts = fan_out_counts(engine, self.claimed)
        self.requests += 1
        return protocol.encode_request(PushRequest(self.claimed, counts))  # type: ignore[arg-type]

    def store(self, engine: Engine, response: PushResponse) -> tuple[object, bool]:
        """Write the ops; returns (the last written step's wake time, whether to ask again at once)."""
        wake = None
        again = isinstance(response.result, Checkpoint)
        for op in response.ops:
            applied = apply_op(engine, self.claimed, op)
            if applied.step is not None:
                self.claimed = with_step(self.claimed, applied.step)
                wake = applied.step.wake_at
            if applied.sealed is not None and applied.sealed.done:
                again = True  # every child finished before the seal: go on at once, as the pull worker does
        return wake, again


RETRY_NOW = timedelta(0)
