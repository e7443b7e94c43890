"""JSON responses, encoded once with orjson; errors in the API's one shape."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from stepwell.http.errors import ApiError


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def error_response(error: ApiError, request_id: str) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="stepwell"'
    return json_response(error.body(request_id), error.status, headers)
