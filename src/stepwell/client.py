"""`stepwell.Client`: the HTTP API from Python, for services that do not hold the database URL.

One class, sync and async (`send`/`asend`, `runs`/`aruns`, ...): each operation is described
once (a request and how to read its answer) and run by a blocking or an async transport.
A 429 or 503 is retried after the server's Retry-After (capped), with backoff otherwise; events
get their ids here, before the first try, so a retried send is a duplicate the server ignores
and can never start a run twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx

from stepwell.clock import SystemClock
from stepwell.errors import (
    EventNotFound,
    EventRejected,
    RemoteError,
    RunNotFound,
    StoreUnavailable,
    TimeoutExpired,
)
from stepwell.model.event import EventIn, as_event_in
from stepwell.model.ids import new_id
from stepwell.model.records import (
    DeadLetter,
    Disposition,
    ErrorInfo,
    EventRecord,
    FailureReason,
    FanOutCounts,
    Run,
    RunStatus,
    Step,
    StepKind,
    StepStatus,
)

T = TypeVar("T")
MAX_BATCH = 1000  # the server's default limit of events per request
RETRY_STATUSES = frozenset({429, 503})
LONG_POLL = 55.0  # seconds per wait request, under the server's limit of 60

_CLOCK = SystemClock()  # event ids are time-ordered; time only from the clock


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    idempotent: bool = True  # safe to send again after a connection error (not a replay)


class Client:
    """`Client("http://127.0.0.1:8288", token)`; the token may be None against `stepwell dev`."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 70.0,
        retries: int = 8,
        max_retry_wait: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries, self.max_retry_wait = retries, max_retry_wait
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._options: dict[str, Any] = {"base_url": self.url, "headers": headers, "timeout": timeout}
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None

    # events

    def send(self, name: str | Sequence[Any], data: Any = None, *, id: str | None = None,
             ts: datetime | None = None) -> Any:  # fmt: skip
        """As App.send: one event's id, or the ids of a batch in order (sent 1,000 per request)."""
        single, requests = _send_requests(name, data, id, ts)
        ids = [event_id for request in requests for event_id in self._call(request)["ids"]]
        return ids[0] if single else ids

    async def asend(self, name: str | Sequence[Any], data: Any = None, *, id: str | None = None,
                    ts: datetime | None = None) -> Any:  # fmt: skip
        single, requests = _send_requests(name, data, id, ts)
        ids = [event_id for request in requests for event_id in (await self._acall(request))["ids"]]
        return ids[0] if single else ids

    def event(self, event_id: str) -> EventRecord:
        return _event(self._call(_Request("GET", f"/api/v1/events/{event_id}")))

    async def aevent(self, event_id: str) -> EventRecord:
        return _event(await self._acall(_Request("GET", f"/api/v1/events/{event_id}")))

    # runs

    def runs(self, **filters: Any) -> list[Run]:
        """Filters as App.runs: event_id, function, status, parent, key, since, until, limit."""
        return [_run(r) for r in self._call(_runs_request(filters))["runs"]]

    async def aruns(self, **filters: Any) -> list[Run]:
        return [_run(r) for r in (await self._acall(_runs_request(filters)))["runs"]]

    def get_run(self, run_id: str) -> Run:
        return _run(self._call(_Request("GET", f"/api/v1/runs/{run_id}")))

    async def aget_run(self, run_id: str) -> Run:
        return _run(await self._acall(_Request("GET", f"/api/v1/runs/{run_id}")))

    def wait(self, run_id: str, timeout: float = 30) -> Run:
        """Block until the run is terminal (long-polls); TimeoutExpired after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0)
            answer = self._call(_wait_request(run_id, left))
            if answer["terminal"] or time.monotonic() >= deadline:
                return _waited(run_id, answer, timeout)

    async def await_run(self, run_id: str, timeout: float = 30) -> Run:
        """The async `wait` (`await` is a keyword, so not `await`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0)
            answer = await self._acall(_wait_request(run_id, left))
            if answer["terminal"] or time.monotonic() >= deadline:
                return _waited(run_id, answer, timeout)

    def cancel(self, run_id: str) -> bool:
        return bool(self._call(_Request("POST", f"/api/v1/runs/{run_id}/cancel"))["cancelled"])

    async def acancel(self, run_id: str) -> bool:
        return bool((await self._acall(_Request("POST", f"/api/v1/runs/{run_id}/cancel")))["cancelled"])

    def replay(self, run_id: str) -> str:
        return str(self._call(_replay_request(run_id))["run_id"])

    async def areplay(self, run_id: str) -> str:
        return str((await self._acall(_replay_request(run_id)))["run_id"])

    def fan_out_progress(self, run_id: str, step_id: str) -> FanOutCounts:
        return _fan_out(self._call(_Request("GET", f"/api/v1/runs/{run_id}/fan-out", {"step": step_id})))

    async def afan_out_progress(self, run_id: str, step_id: str) -> FanOutCounts:
        return _fan_out(await self._acall(_Request("GET", f"/api/v1/runs/{run_id}/fan-out", {"step": step_id})))

    # dead letters

    def dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return [_dead_letter(d) for d in self._call(_dlq_request(function, limit))["dead_letters"]]

    async def adead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return [_dead_letter(d) for d in (await self._acall(_dlq_request(function, limit)))["dead_letters"]]

    def redrive(self, run_ids: Sequence[str] | str | None = None, *, function: str | None = None,
                since: datetime | None = None, fan_out: str | None = None) -> list[str]:  # fmt: skip
        return list(self._call(_redrive_request(run_ids, function, since, fan_out))["redriven"])

    async def aredrive(self, run_ids: Sequence[str] | str | None = None, *, function: str | None = None,
                       since: datetime | None = None, fan_out: str | None = None) -> list[str]:  # fmt: skip
        return list((await self._acall(_redrive_request(run_ids, function, since, fan_out)))["redriven"])

    # functions

    def pause_function(self, function: str) -> datetime:
        """As App.pause_function: when it was paused (needs a key with the operate scope)."""
        return _paused_at(self._call(_function_request("pause", function)))

    async def apause_function(self, function: str) -> datetime:
        return _paused_at(await self._acall(_function_request("pause", function)))

    def resume_function(self, function: str) -> None:
        self._call(_function_request("resume", function))

    async def aresume_function(self, function: str) -> None:
        await self._acall(_function_request("resume", function))

    # ordering keys (each as App's method of the same name; a key with the operate scope)

    def pause_key(self, function: str, key: str) -> None:
        self._call(_key_request("pause", function, key))

    async def apause_key(self, function: str, key: str) -> None:
        await self._acall(_key_request("pause", function, key))

    def resume_key(self, function: str, key: str) -> None:
        self._call(_key_request("resume", function, key))

    async def aresume_key(self, function: str, key: str) -> None:
        await self._acall(_key_request("resume", function, key))

    def drain_key(self, function: str, key: str) -> list[str]:
        """The ids of the runs cancelled."""
        return list(self._call(_key_request("drain", function, key))["cancelled"])

    async def adrain_key(self, function: str, key: str) -> list[str]:
        return list((await self._acall(_key_request("drain", function, key)))["cancelled"])

    def skip_key(self, function: str, key: str) -> str | None:
        """None when the key was not parked, else the run it moved on to ("" for none)."""
        return _skipped(self._call(_key_request("skip", function, key)))

    async def askip_key(self, function: str, key: str) -> str | None:
        return _skipped(await self._acall(_key_request("skip", function, key)))

    # transport

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _call(self, request: _Request) -> Any:
        if self._sync is None:
            self._sync = httpx.Client(**self._options)
        client = self._sync
        for attempt in range(self.retries + 1):
            try:
                response = client.request(request.method, request.path, params=request.params, json=request.body)
            except httpx.TransportError as err:
                if not request.idempotent or attempt == self.retries:
                    raise StoreUnavailable(f"{request.method} {self.url}{request.path}: {err}") from err
                time.sleep(_backoff(attempt))
                continue
            if not _retriable(request, response.status_code) or attempt == self.retries:
                return _answer(request, response)
            time.sleep(self._pause(response, attempt))
        raise AssertionError("unreachable")

    async def _acall(self, request: _Request) -> Any:
        if self._async is None:
            self._async = httpx.AsyncClient(**self._options)
        client = self._async
        for attempt in range(self.retries + 1):
            try:
                response = await client.request(request.method, request.path, params=request.params, json=request.body)
            except httpx.TransportError as err:
                if not request.idempotent or attempt == self.retries:
                    raise StoreUnavailable(f"{request.method} {self.url}{request.path}: {err}") from err
                await asyncio.sleep(_backoff(attempt))
                continue
            if not _retriable(request, response.status_code) or attempt == self.retries:
                return _answer(request, response)
            await asyncio.sleep(self._pause(response, attempt))
        raise AssertionError("unreachable")

    def _pause(self, response: httpx.Response, attempt: int) -> float:
        """The server's Retry-After when it gives one in seconds, else backoff; never over max_retry_wait."""
        header = response.headers.get("retry-after", "")
        try:
            wait = float(header)
        except ValueError:
            wait = _backoff(attempt)
        return min(max(wait, 0.0), self.max_retry_wait)


def _retriable(request: _Request, status: int) -> bool:
    """429 and 503 mean nothing was written; 504 (the server gave up waiting for the store) means the
    write may or may not be stored, so only a request that is safe to repeat is sent again."""
    return status in RETRY_STATUSES or (status == 504 and request.idempotent)


def _backoff(attempt: int) -> float:
    return float(min(0.1 * 2**attempt, 5.0) * random.uniform(0.8, 1.2))


def _answer(request: _Request, response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        error = response.json()
        code, message, where = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        code, message, where = "http_error", response.text[:200], None
    if response.status_code == 404 and request.path.startswith("/api/v1/runs/"):
        raise RunNotFound(message)
    if response.status_code == 404 and request.path.startswith("/api/v1/events/"):
        raise EventNotFound(message)
    if code == "event_rejected":
        raise EventRejected(message)
    if response.status_code == 503:
        raise StoreUnavailable(message)
    raise RemoteError(response.status_code, code, message, where)


# requests


def _send_requests(
    name: str | Sequence[Any], data: Any, event_id: str | None, ts: datetime | None
) -> tuple[bool, list[_Request]]:
    if isinstance(name, str):
        events = [EventIn(name, data, event_id, ts)]
    else:
        if data is not None or event_id is not None or ts is not None:
            raise EventRejected("send(batch) takes only the list; put data, id and ts in each entry")
        events = [as_event_in(item, index) for index, item in enumerate(name)]
    now = _CLOCK.now()
    bodies = [
        {
            "name": e.name,
            "data": {} if e.data is None else e.data,
            "id": e.id or new_id(now),  # here, once: every retry sends the same id
            **({"ts": e.ts.isoformat()} if e.ts else {}),
        }
        for e in events
    ]
    chunks = [bodies[i : i + MAX_BATCH] for i in range(0, len(bodies), MAX_BATCH)]
    return isinstance(name, str), [_Request("POST", "/api/v1/events", body=chunk) for chunk in chunks]


def _runs_request(filters: dict[str, Any]) -> _Request:
    names = {"event_id": "event", "function": "function", "status": "status", "parent": "parent", "key": "key",
             "since": "since", "until": "until", "limit": "limit", "cursor": "cursor"}  # fmt: skip
    unknown = set(filters) - set(names)
    if unknown:
        raise TypeError(f"runs() got unknown filters {sorted(unknown)}; use {sorted(names)}")
    params = {}
    for key, value in filters.items():
        if value is not None:
            params[names[key]] = value.isoformat() if isinstance(value, datetime) else str(value)
    return _Request("GET", "/api/v1/runs", params)


def _wait_request(run_id: str, left: float) -> _Request:
    return _Request("GET", f"/api/v1/runs/{run_id}/wait", {"timeout": f"{min(left, LONG_POLL):.3f}"})


def _replay_request(run_id: str) -> _Request:
    return _Request("POST", f"/api/v1/runs/{run_id}/replay", idempotent=False)  # a second replay is a second run


def _dlq_request(function: str | None, limit: int) -> _Request:
    return _Request("GET", "/api/v1/dead-letters", {"limit": limit, **({"function": function} if function else {})})


def _redrive_request(
    run_ids: Sequence[str] | str | None, function: str | None, since: datetime | None, fan_out: str | None
) -> _Request:
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids or ())
    body: dict[str, Any] = {"run_ids": ids}
    if function is not None:
        body["function"] = function
    if since is not None:
        body["since"] = since.isoformat()
    if fan_out is not None:
        body["fan_out"] = fan_out
    return _Request("POST", "/api/v1/dead-letters/redrive", body=body)


# answers


def _waited(run_id: str, answer: dict[str, Any], timeout: float) -> Run:
    run = _run(answer["run"])
    if not answer["terminal"]:
        raise TimeoutExpired(f"run {run_id} is still {run.status.value} after {timeout:g}s")
    return run


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _error(value: dict[str, Any] | None) -> ErrorInfo | None:
    return ErrorInfo.from_json(value)


def _step(data: dict[str, Any]) -> Step:
    return Step(
        id=data["id"], kind=StepKind(data["kind"]), status=StepStatus(data["status"]), attempts=data["attempts"],
        output=data["output"], error=_error(data["error"]), started_at=_time(data["started_at"]),
        ended_at=_time(data["ended_at"]), wake_at=_time(data["wake_at"]),
    )  # fmt: skip


def _run(data: dict[str, Any]) -> Run:
    created = _time(data["created_at"])
    assert created is not None
    return Run(
        id=data["id"], function=data["function"], status=RunStatus(data["status"]), attempt=data["attempt"],
        max_attempts=data["max_attempts"], event_id=data["event_id"], parent_id=data["parent_id"], created_at=created,
        started_at=_time(data["started_at"]), ended_at=_time(data["ended_at"]),
        available_at=_time(data.get("available_at")), output=data["output"], error=_error(data["error"]),
        replay_of=data.get("replay_of"), steps=tuple(_step(s) for s in data.get("steps", ())),
        errors=tuple(e for e in (_error(x) for x in data.get("errors", ())) if e is not None),
        ordering_key=data.get("ordering_key"), waiting_reason=data.get("waiting_reason"),
    )  # fmt: skip


def _event(data: dict[str, Any]) -> EventRecord:
    ts, received = _time(data["ts"]), _time(data["received_at"])
    assert ts is not None and received is not None
    skipped = tuple((s["function"], s["reason"], s["run_id"]) for s in data["skipped"])
    return EventRecord(
        data["id"], data["name"], data["data"], ts, received, Disposition(data["disposition"]),
        tuple(data["run_ids"]), skipped,
    )  # fmt: skip


def _dead_letter(data: dict[str, Any]) -> DeadLetter:
    failed = _time(data["failed_at"])
    error = _error(data["error"])
    assert failed is not None and error is not None
    return DeadLetter(
        data["run_id"], data["function"], error, FailureReason(data["reason"]), failed, data["attempts"],
        data["redrive_count"], data["ordering_key"], data["key_policy"],
    )  # fmt: skip


def _fan_out(data: dict[str, Any]) -> FanOutCounts:
    counts = {name: int(data[name]) for name in ("queued", "running", "completed", "failed", "cancelled")}
    return FanOutCounts(data["total"], **counts, done=bool(data["done"]))


def _function_request(action: str, function: str) -> _Request:
    return _Request("POST", f"/api/v1/functions/{action}", body={"function": function})


def _key_request(action: str, function: str, key: str) -> _Request:
    return _Request("POST", f"/api/v1/ordering-keys/{action}", body={"function": function, "key": key})


def _skipped(answer: dict[str, Any]) -> str | None:
    return (answer["next_run_id"] or "") if answer["parked"] else None


def _paused_at(answer: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(answer["paused_at"])
