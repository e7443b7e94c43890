"""The routes of /api/v1: each parses and checks its input, calls one App method, renders the result.

`ROUTES` is the table the server, the OpenAPI document and the tests walk: method, path, the scope
a key needs (None: open), the handler, and what the document says about it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.responses import Response

from stepwell.app import App
from stepwell.http import shapes
from stepwell.http.call import Call
from stepwell.http.errors import invalid
from stepwell.http.render import json_response
from stepwell.model.apikeys import Scope
from stepwell.observe import metrics as observed_metrics
from stepwell.observe import tracing

Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    scope: Scope | None
    handler: Handler
    summary: str
    status: int = 200
    query: tuple[Param, ...] = ()
    body: str | None = None  # a schema name in openapi.COMPONENTS
    returns: str = "Object"
    extra_statuses: tuple[int, ...] = field(default=())


def functions_of(app: App) -> list[dict[str, Any]]:
    """The functions served on this database, from the store's registry (every app's, retired ones
    included with their `retired_at`): the server needs no user code to list or route them."""
    return [shapes.function_json(function) for function in app.functions()]


# health


async def health(call: Call) -> Response:
    return json_response({"status": "ok"})


async def ready(call: Call) -> Response:
    await call.read(call.app.store.queue_stats)  # reaches the database: StoreUnavailable answers 503
    return json_response({"status": "ready"})


async def metrics(call: Call) -> Response:
    """This server process's Prometheus metrics (ingest, and the queue gauges when it runs the scheduler)."""
    return Response(observed_metrics.render(), media_type=observed_metrics.CONTENT_TYPE)


# Served beside the table (text, not JSON, so it stays out of the OpenAPI document); needs a read key.
METRICS_ROUTE = Route("GET", "/metrics", Scope.READ, metrics, "Prometheus metrics")


# events


async def send_events(call: Call) -> Response:
    events, batch = shapes.events_in(await call.json(), call.limits.max_batch)
    headers = {name: value for name in ("traceparent", "tracestate") if (value := call.request.headers.get(name))}

    def send(app: App) -> list[str]:  # on a store thread: the caller's trace context is made current there
        with tracing.incoming(headers):
            ids: list[str] = app.send(events)
            return ids

    ids = await call.write(send, call.app)
    return json_response({"ids": ids} if batch else {"id": ids[0], "ids": ids}, 202)


async def get_event(call: Call) -> Response:
    event_id = _path(call, "event_id")
    return json_response(shapes.event_json(await call.read(call.app.event, event_id)))


# runs


async def list_runs(call: Call) -> Response:
    query, n = call.query, call.limits.max_name_length
    limit = shapes.integer(query, "limit", 100, 1, call.limits.max_page)
    payload = shapes.text(query, "payload", 1000)
    filters: dict[str, Any] = dict(
        function=shapes.text(query, "function", n),
        status=shapes.status(query),
        key=shapes.text(query, "key", n),
        event_id=shapes.text(query, "event", n),
        parent=shapes.text(query, "parent", n),
        since=shapes.optional_time(query, "since"),
        until=shapes.optional_time(query, "until"),
        after=shapes.decode_cursor(shapes.text(query, "cursor", 400)),
        limit=limit,
    )
    if payload is not None:  # a bounded scan: a page may hold fewer runs and still have a next_cursor
        search = await call.read(call.app.search_runs, payload, **filters)
        following = search.resume_after
        cursor = shapes.encode_cursor_at(*following) if following else None
        return json_response({"runs": [shapes.run_json(run) for run in search.runs], "next_cursor": cursor})
    found = await call.read(call.app.runs, **filters)
    cursor = shapes.encode_cursor(found[-1]) if len(found) == limit else None
    return json_response({"runs": [shapes.run_json(run) for run in found], "next_cursor": cursor})


async def get_run(call: Call) -> Response:
    run_id = _path(call, "run_id")

    def read(app: App) -> dict[str, Any]:
        run = app.get_run(run_id)
        return shapes.run_json(run, app.run_input(run_id), detail=True, logs=app.run_logs(run.id))

    return json_response(await call.read(read, call.app))


async def cancel_run(call: Call) -> Response:
    cancelled = await call.write(call.app.cancel, _path(call, "run_id"))
    return json_response({"cancelled": cancelled})


async def cancel_runs(call: Call) -> Response:
    body, n = shapes.object_body(await call.json(), frozenset({"function", "status", "key", "event", "limit"})), 200
    ids = await call.write(
        call.app.cancel_runs,
        function=shapes.text(body, "function", n),
        status=shapes.status(body),
        key=shapes.text(body, "key", n),
        event_id=shapes.text(body, "event", n),
        limit=shapes.integer(body, "limit", 1000, 1, 10_000),
    )
    return json_response({"cancelled": ids})


async def replay_run(call: Call) -> Response:
    return json_response({"run_id": await call.write(call.app.replay, _path(call, "run_id"))}, 201)


async def wait_run(call: Call) -> Response:
    """Long-poll: answers as soon as the run is terminal, or with its current state after `timeout`."""
    run_id = _path(call, "run_id")
    timeout = shapes.seconds(call.query, "timeout", 30.0, call.limits.max_wait_seconds)
    deadline, pause = time.monotonic() + timeout, 0.01
    while True:
        run = await call.read(call.app.get_run, run_id)
        if run.status.is_terminal or time.monotonic() >= deadline:
            return json_response({"terminal": run.status.is_terminal, "run": shapes.run_json(run)})
        await anyio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, 0.25)


async def fan_out(call: Call) -> Response:
    step = shapes.required_text(call.query, "step", call.limits.max_name_length)
    counts = await call.read(call.app.fan_out_progress, _path(call, "run_id"), step)
    return json_response(shapes.fan_out_json(counts))


# dead letters


async def list_dead_letters(call: Call) -> Response:
    query = call.query
    entries = await call.read(
        call.app.dead_letters,
        function=shapes.text(query, "function", call.limits.max_name_length),
        limit=shapes.integer(query, "limit", 100, 1, call.limits.max_page),
    )
    return json_response({"dead_letters": [shapes.dead_letter_json(entry) for entry in entries]})


async def redrive(call: Call) -> Response:
    body = shapes.object_body(await call.json(), frozenset({"run_ids", "function", "since", "fan_out"}))
    run_ids = shapes.string_list(body, "run_ids", 10_000, 200)
    function = shapes.text(body, "function", call.limits.max_name_length)
    since = shapes.optional_time(body, "since")
    parent = shapes.text(body, "fan_out", 200)
    if not run_ids and function is None and since is None and parent is None:
        raise invalid("name run_ids, function, since or fan_out (refusing to redrive everything)", "body")
    redriven = await call.write(call.app.redrive, run_ids, function=function, since=since, fan_out=parent)
    return json_response({"redriven": redriven})


# functions and ordering keys


async def list_functions(call: Call) -> Response:
    return json_response({"functions": functions_of(call.app)})


async def register_functions(call: Call) -> Response:
    """A web app serving functions by push registers them here: it needs no database credentials."""
    body = shapes.object_body(await call.json(), frozenset({"app", "definitions", "push_url", "push_functions"}))
    app = shapes.required_text(body, "app", call.limits.max_name_length)
    definitions = body.get("definitions")
    if not isinstance(definitions, list) or len(definitions) > 1000:
        raise invalid("must be an array of at most 1000 function definitions", "definitions")
    push_url = shapes.text(body, "push_url", 2000)
    push_functions = shapes.string_list(body, "push_functions", 1000, call.limits.max_name_length)
    change = await call.write(call.app.register_remote, app, definitions, push_url, push_functions)
    return json_response(
        {
            "generation": change.generation,
            "added": list(change.added),
            "changed": list(change.changed),
            "retired": list(change.retired),
        }
    )


def _function_action(action: str) -> Handler:
    async def handler(call: Call) -> Response:
        body = shapes.object_body(await call.json(), frozenset({"function"}))
        function = shapes.required_text(body, "function", call.limits.max_name_length)
        if action == "pause":
            paused_at = await call.write(call.app.pause_function, function)
            return json_response({"function": function, "paused": True, "paused_at": shapes.when(paused_at)})
        await call.write(call.app.resume_function, function)
        return json_response({"function": function, "paused": False, "paused_at": None})

    return handler


def _key_action(action: str) -> Handler:
    async def handler(call: Call) -> Response:
        body = shapes.object_body(await call.json(), frozenset({"function", "key"}))
        function = shapes.required_text(body, "function", call.limits.max_name_length)
        key = shapes.required_text(body, "key", call.limits.max_name_length)
        method = {"pause": call.app.pause_key, "resume": call.app.resume_key}.get(action)
        if method is not None:
            await call.write(method, function, key)
            return json_response({"function": function, "key": key, "action": action})
        if action == "drain":
            return json_response({"cancelled": await call.write(call.app.drain_key, function, key)})
        moved = await call.write(call.app.skip_key, function, key)
        return json_response({"parked": moved is not None, "next_run_id": moved or None})

    return handler


# API keys


async def list_tokens(call: Call) -> Response:
    return json_response({"tokens": [shapes.api_key_json(key) for key in await call.read(call.app.api_keys)]})


async def create_token(call: Call) -> Response:
    body = shapes.object_body(await call.json(), frozenset({"name", "scopes"}))
    name = shapes.required_text(body, "name", 100)
    scopes = shapes.string_list(body, "scopes", 4, 20)
    key, token = await call.write(call.app.create_api_key, name, scopes)
    return json_response({**shapes.api_key_json(key), "token": token}, 201)


async def revoke_token(call: Call) -> Response:
    return json_response({"revoked": await call.write(call.app.revoke_api_key, _path(call, "key_id"))})


def _path(call: Call, name: str) -> str:
    value = call.path[name]
    if not isinstance(value, str) or not value or len(value) > call.limits.max_name_length or not value.isprintable():
        raise invalid(f"must be 1-{call.limits.max_name_length} printable characters", name)
    return value


_STR = {"type": "string"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_TIME = {"type": "string", "format": "date-time"}
_RUN_FILTERS = (
    Param("function", _NAME, "runs of this function"),
    Param(
        "status",
        {"type": "string", "enum": ["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled"]},
    ),
    Param("key", _NAME, "runs of this ordering key"),
    Param("event", _NAME, "runs started by this event"),
    Param("parent", _NAME, "children of this run"),
    Param("since", _TIME, "created at or after"),
    Param("until", _TIME, "created before"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (default 100)"),
    Param("cursor", _STR, "next_cursor of the previous page"),
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/health", None, health, "Liveness: the server answers", returns="Status"),
    Route(
        "GET", "/api/v1/ready", None, ready, "Readiness: the database answers", returns="Status", extra_statuses=(503,)
    ),
    Route(
        "POST",
        "/api/v1/events",
        Scope.INGEST,
        send_events,
        "Send one event or an array of them; 202 once they and their runs are committed",
        status=202,
        body="EventsIn",
        returns="Accepted",
        extra_statuses=(413, 415, 422, 429, 503),
    ),
    Route(
        "GET",
        "/api/v1/events/{event_id:path}",
        Scope.READ,
        get_event,
        "An event and its disposition",
        returns="EventRecord",
        extra_statuses=(404,),
    ),
    Route(
        "GET",
        "/api/v1/runs",
        Scope.READ,
        list_runs,
        "Runs, newest first, filtered, paginated by cursor",
        query=(
            *_RUN_FILTERS,
            Param("payload", {"type": "string", "maxLength": 1000}, "input field = value: data.customer_id = 42"),
        ),
        returns="RunPage",
    ),
    Route(
        "POST",
        "/api/v1/runs/cancel",
        Scope.OPERATE,
        cancel_runs,
        "Cancel unfinished runs matching a filter",
        body="CancelFilter",
        returns="Cancelled",
        extra_statuses=(422, 429),
    ),
    Route(
        "GET",
        "/api/v1/runs/{run_id}",
        Scope.READ,
        get_run,
        "A run with its steps, input, output, errors (with tracebacks) and waiting reason",
        returns="RunDetail",
        extra_statuses=(404,),
    ),
    Route(
        "POST",
        "/api/v1/runs/{run_id}/cancel",
        Scope.OPERATE,
        cancel_run,
        "Cancel a run that has not ended",
        returns="Object",
        extra_statuses=(404, 429),
    ),
    Route(
        "POST",
        "/api/v1/runs/{run_id}/replay",
        Scope.OPERATE,
        replay_run,
        "Start a new run of the same function from the same input",
        status=201,
        returns="Object",
        extra_statuses=(404, 429),
    ),
    Route(
        "GET",
        "/api/v1/runs/{run_id}/wait",
        Scope.READ,
        wait_run,
        "Long-poll until the run is terminal or `timeout` seconds pass (at most 60)",
        query=(Param("timeout", {"type": "number", "minimum": 0, "maximum": 60}),),
        returns="Waited",
        extra_statuses=(404,),
    ),
    Route(
        "GET",
        "/api/v1/runs/{run_id}/fan-out",
        Scope.READ,
        fan_out,
        "Progress of a fan-out step's children",
        query=(Param("step", _NAME, "the fan-out step's id", required=True),),
        returns="FanOut",
    ),
    Route(
        "GET",
        "/api/v1/dead-letters",
        Scope.READ,
        list_dead_letters,
        "The dead-letter list, oldest first",
        query=(Param("function", _NAME), Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})),
        returns="DeadLetters",
    ),
    Route(
        "POST",
        "/api/v1/dead-letters/redrive",
        Scope.OPERATE,
        redrive,
        "Re-run dead letters from their failed step, by ids or by filter (each entry once)",
        body="RedriveIn",
        returns="Object",
        extra_statuses=(422, 429),
    ),
    Route(
        "GET",
        "/api/v1/functions",
        Scope.READ,
        list_functions,
        "The functions and their definitions",
        returns="Functions",
    ),
    Route(
        "POST",
        "/api/v1/functions/register",
        Scope.ADMIN,
        register_functions,
        "Register an app's functions (a web app serving them by push: with its URL)",
        body="RegistrationIn",
        returns="Object",
        extra_statuses=(422,),
    ),
    *(
        Route(
            "POST",
            f"/api/v1/functions/{action}",
            Scope.OPERATE,
            _function_action(action),
            summary,
            body="FunctionName",
            returns="FunctionPause",
            extra_statuses=(404, 422, 429),
        )
        for action, summary in (
            ("pause", "Stop starting runs of a whole function (runs in progress carry on; events still start runs)"),
            ("resume", "Start runs of the paused function again, at once"),
        )
    ),
    *(
        Route(
            "POST",
            f"/api/v1/ordering-keys/{action}",
            Scope.OPERATE,
            _key_action(action),
            summary,
            body="OrderingKey",
            returns="Object",
            extra_statuses=(404, 422, 429),
        )
        for action, summary in (
            ("pause", "Stop starting runs of one ordering key (a run in progress carries on)"),
            ("resume", "Start runs of the ordering key again"),
            ("drain", "Cancel every run of the ordering key that has not started"),
            ("skip", "Move a parked ordering key past its dead letter"),
        )
    ),
    Route("GET", "/api/v1/tokens", Scope.ADMIN, list_tokens, "API keys (never their tokens)", returns="Tokens"),
    Route(
        "POST",
        "/api/v1/tokens",
        Scope.ADMIN,
        create_token,
        "Create an API key; its token is in this answer only",
        status=201,
        body="TokenIn",
        returns="Object",
        extra_statuses=(422,),
    ),
    Route("DELETE", "/api/v1/tokens/{key_id}", Scope.ADMIN, revoke_token, "Revoke an API key", returns="Object"),
)
