"""The OpenAPI 3.1 document of /api/v1, built from the route table so that it cannot drift from it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepwell.http.routes import Route

_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_TIME = {"type": "string", "format": "date-time"}
_NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
_ANY: dict[str, Any] = {}
_ERROR_INFO = {
    "type": ["object", "null"],
    "properties": {
        "type": {"type": "string"},
        "message": {"type": "string"},
        "traceback": {"type": "string"},
        "step": {"type": ["string", "null"]},
    },
}
_EVENT_IN = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$"},
        "data": {"type": ["object", "null"], "description": "a JSON object; {} when absent or null"},
        "id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "idempotency: a repeated id is accepted and ignored",
        },
        "ts": _TIME,
    },
}
_RUN = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "function": {"type": "string"},
        "status": {"type": "string"},
        "attempt": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "event_id": {"type": ["string", "null"]},
        "parent_id": {"type": ["string", "null"]},
        "created_at": _TIME,
        "started_at": _NULL_TIME,
        "ended_at": _NULL_TIME,
        "output": _ANY,
        "error": _ERROR_INFO,
    },
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["code", "message", "field", "request_id"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": ["string", "null"]},
            "request_id": {"type": "string", "description": "also the X-Request-Id header; the log names it"},
        },
    },
    "Object": {"type": "object"},
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
    "EventIn": _EVENT_IN,
    "EventsIn": {"oneOf": [_EVENT_IN, {"type": "array", "items": _EVENT_IN, "minItems": 1, "maxItems": 1000}]},
    "Accepted": {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "string"}}}},
    "EventRecord": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "data": _ANY,
            "disposition": {"type": "string"},
            "run_ids": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Run": _RUN,
    "RunDetail": {
        "allOf": [
            _RUN,
            {
                "type": "object",
                "properties": {
                    "waiting_reason": {"type": ["string", "null"]},
                    "steps": {"type": "array"},
                    "errors": {"type": "array"},
                    "input": {"type": ["object", "null"]},
                },
            },
        ]
    },
    "RunPage": {
        "type": "object",
        "properties": {"runs": {"type": "array", "items": _RUN}, "next_cursor": {"type": ["string", "null"]}},
    },
    "Waited": {"type": "object", "properties": {"terminal": {"type": "boolean"}, "run": _RUN}},
    "Cancelled": {"type": "object", "properties": {"cancelled": {"type": "array", "items": {"type": "string"}}}},
    "CancelFilter": {
        "type": "object",
        "additionalProperties": False,
        "description": "at least one of function, key, event",
        "properties": {
            "function": _NAME,
            "status": {"type": "string"},
            "key": _NAME,
            "event": _NAME,
            "limit": {"type": "integer", "minimum": 1, "maximum": 10000},
        },
    },
    "FanOut": {"type": "object", "properties": {"total": {"type": ["integer", "null"]}, "done": {"type": "boolean"}}},
    "DeadLetters": {"type": "object", "properties": {"dead_letters": {"type": "array"}}},
    "RedriveIn": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "run_ids": {"type": "array", "items": _NAME, "maxItems": 10000},
            "function": _NAME,
            "since": _TIME,
            "fan_out": _NAME,
        },
    },
    "Functions": {"type": "object", "properties": {"functions": {"type": "array"}}},
    "FunctionName": {
        "type": "object",
        "required": ["function"],
        "additionalProperties": False,
        "properties": {"function": _NAME},
    },
    "FunctionPause": {
        "type": "object",
        "required": ["function", "paused", "paused_at"],
        "properties": {"function": {"type": "string"}, "paused": {"type": "boolean"}, "paused_at": _NULL_TIME},
    },
    "OrderingKey": {
        "type": "object",
        "required": ["function", "key"],
        "additionalProperties": False,
        "properties": {"function": _NAME, "key": _NAME},
    },
    "Tokens": {"type": "object", "properties": {"tokens": {"type": "array"}}},
    "RegistrationIn": {
        "type": "object",
        "required": ["app", "definitions"],
        "additionalProperties": False,
        "properties": {
            "app": _NAME,
            "definitions": {"type": "array", "items": {"type": "object"}, "maxItems": 1000},
            "push_url": {"type": ["string", "null"], "maxLength": 2000},
            "push_functions": {"type": "array", "items": _NAME, "maxItems": 1000},
        },
    },
    "TokenIn": {
        "type": "object",
        "required": ["name", "scopes"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "scopes": {"type": "array", "items": {"enum": ["ingest", "read", "operate", "admin"]}, "minItems": 1},
        },
    },
}

_DESCRIPTIONS = {
    400: "malformed request",
    401: "no API key, or an unknown one",
    403: "the key lacks the scope",
    404: "not found",
    408: "the body was too slow",
    413: "the body is too large",
    415: "not application/json",
    422: "the request is well-formed but refused",
    429: "saturated: retry after Retry-After seconds",
    503: "the database is unavailable: retry after Retry-After seconds",
    504: "the database did not answer in time: the outcome is unknown, retry after Retry-After seconds",
}
_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def document(routes: Sequence[Route], *, auth: bool) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = _CONVERTER.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, path, auth)
    paths["/api/v1/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1"}},
        }
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Stepwell API", "version": "1"},
        "paths": paths,
        "components": {"schemas": COMPONENTS},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


def _operation(route: Route, path: str, auth: bool) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    statuses = {400, 404, *route.extra_statuses} | ({401, 403} if auth and route.scope else set())
    if 503 in statuses:  # a route that names the database's outage also names its silence
        statuses.add(504)
    responses: dict[str, Any] = {
        str(route.status): {
            "description": "success",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.returns}"}}},
        }
    }
    for status in sorted(statuses):
        responses[str(status)] = {"description": _DESCRIPTIONS.get(status, "refused"), **error}
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
        "responses": responses,
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    parameters += [
        {"name": p.name, "in": "query", "required": p.required, "schema": p.schema, "description": p.description}
        for p in route.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.body}"}}},
        }
    if auth and route.scope is not None:
        operation["security"] = [{"bearer": []}]
        operation["description"] = f"Needs an API key with the `{route.scope.value}` scope."
    return operation
