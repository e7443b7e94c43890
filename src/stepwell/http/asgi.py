"""The ASGI application: the route table wrapped with authentication and error rendering.

`create_app(app)` serves one `stepwell.App`, and `/metrics` (Prometheus text). With `auth=True`
every route but health, readiness and the OpenAPI document needs `Authorization: Bearer <token>`
of a key holding the route's scope; with `auth=False` (development) the server answers requests
addressed to a loopback name only (DNS rebinding, see envelope.py). Every answer carries a request id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute

from stepwell.app import App
from stepwell.errors import StepwellError
from stepwell.http.call import Call, Pools
from stepwell.http.envelope import Envelope, request_id
from stepwell.http.errors import ApiError, from_stepwell
from stepwell.http.limits import Limits
from stepwell.http.openapi import document
from stepwell.http.render import error_response, json_response
from stepwell.http.routes import METRICS_ROUTE, ROUTES, Route
from stepwell.model.apikeys import Scope

log = logging.getLogger("stepwell.http")


def create_app(app: App, *, auth: bool = True, limits: Limits | None = None, dashboard: bool = True) -> Starlette:
    """The API for `app`; `auth=False` only for development on loopback (the CLI refuses it elsewhere).

    With `dashboard`, the dashboard's pages are served at `/` beside the API (an unknown `/api/...`
    path still answers the API's JSON 404)."""
    limits = limits or Limits()
    holder: dict[str, Pools] = {}

    def pools() -> Pools:  # made on the server's event loop, at the first request
        if "pools" not in holder:
            holder["pools"] = Pools.sized(limits)
        return holder["pools"]

    openapi = document(ROUTES, auth=auth)
    routes = [
        StarletteRoute(route.path, _endpoint(route, app, limits, pools, auth), methods=[route.method])
        for route in (*ROUTES, METRICS_ROUTE)
    ]
    routes.append(StarletteRoute("/api/v1/openapi.json", _static(openapi), methods=["GET"]))
    if dashboard:
        from stepwell.dashboard import create_dashboard

        routes.append(StarletteRoute("/api/{rest:path}", _no_route, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
        routes.append(Mount("/", create_dashboard(app, auth=auth)))  # type: ignore[arg-type]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
        middleware=[Middleware(Envelope, keyless=not auth)],  # type: ignore[arg-type]
    )


def _endpoint(
    route: Route, app: App, limits: Limits, pools: Callable[[], Pools], auth: bool
) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def endpoint(request: Request) -> Response:
        call = Call(request, app, limits, pools())
        rid = request_id(request)
        try:
            if auth and route.scope is not None:
                await _authorize(call, route.scope)
            return await route.handler(call)
        except ApiError as err:
            return error_response(err, rid)
        except StepwellError as err:
            return error_response(from_stepwell(err, rid), rid)
        except Exception:
            log.exception("request %s: %s %s failed", rid, route.method, request.url.path)
            return error_response(
                ApiError(500, "internal", "the server failed; the error is in its log under this request_id"), rid
            )

    return endpoint


async def _authorize(call: Call, scope: Scope) -> None:
    header = call.request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send an API key as Authorization: Bearer <token>", "Authorization")
    key = await call.read(call.app.check_api_key, token.strip())
    if key is None:
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked", "Authorization")
    if not key.allows(scope):
        raise ApiError(403, "forbidden", f"this key lacks the {scope.value!r} scope", "Authorization")


def _static(data: dict[str, Any]) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def endpoint(request: Request) -> Response:
        return json_response(data)

    return endpoint


async def _no_route(request: Request) -> Response:
    return error_response(ApiError(404, "not_found", "no such route"), request_id(request))


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the API's error shape."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    message = "no such route" if exc.status_code == 404 else str(exc.detail)
    response = error_response(ApiError(exc.status_code, code, message), request_id(request))
    if exc.headers:
        response.headers.update(exc.headers)
    return response
