"""Limits enforced before a body is parsed: size (declared and counted), read time, JSON depth;
and strict JSON once it is (no duplicate keys).

A body is read in chunks and counted, so a client that lies in Content-Length (or sends none,
chunked) is cut off at the limit without buffering more; a client that trickles its body is
cut off at `body_timeout`. Depth is measured by a scan of brackets outside strings before
orjson sees the bytes, so a 10,000-deep document costs a linear scan and nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.requests import ClientDisconnect, Request

from stepwell.http.errors import ApiError, bad_request

_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask of the server. Every limit refuses with 413/422/429, never a crash."""

    max_body_bytes: int = 8 * 1024 * 1024  # a batch of events; each event also meets App(max_event_bytes)
    max_batch: int = 1000  # events per POST /events
    max_json_depth: int = 64  # nesting of any JSON body
    max_name_length: int = 200  # names, ids and keys in paths, queries and bodies
    max_page: int = 1000  # runs or dead letters per page
    max_wait_seconds: float = 60.0  # the longest long-poll of /runs/{id}/wait
    body_timeout: float = 10.0  # seconds to receive a whole body: a slower client gets 408
    header_timeout: float = 10.0  # seconds to receive a request's headers: a slower client is disconnected
    max_inflight_writes: int = 32  # store writes in progress at once (ingest and operations)
    queue_timeout: float = 2.0  # how long a write waits for a free slot before 429
    store_timeout: float = 40.0  # seconds a store call may take before 504 (a frozen or cut-off database)


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request body, refused early when its declared or counted size is over the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad_request("Content-Length is not a number", "Content-Length")
        if int(declared) > limits.max_body_bytes:
            raise _too_large(int(declared), limits)
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(limits.body_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise _too_large(size, limits)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "timeout", f"the body did not arrive within {limits.body_timeout:g}s") from None
    except ClientDisconnect:
        raise bad_request("the client went away before the body was complete") from None
    return b"".join(chunks)


def _too_large(size: int, limits: Limits) -> ApiError:
    return ApiError(
        413, "too_large", f"the body is over the limit of {limits.max_body_bytes} bytes (at least {size})", "body"
    )


def check_depth(body: bytes, limit: int) -> None:
    """Refuse JSON nested deeper than `limit` without parsing it (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # cannot be deeper than the number of its brackets
    depth = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPEN:
            depth += 1
            if depth > limit:
                raise ApiError(422, "too_deep", f"the JSON body is nested deeper than {limit} levels", "body")
        else:
            depth -= 1


def parse_json(request: Request, body: bytes, limits: Limits) -> Any:
    """Strict JSON (RFC 8259: no NaN or Infinity, valid UTF-8, no duplicate keys) from a body sent as
    application/json."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json", "Content-Type")
    if not body:
        raise bad_request("the body is empty; send a JSON document", "body")
    check_depth(body, limits.max_json_depth)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"the body is not valid JSON: {err}", "body") from None
    if b'"' in body:
        json.loads(body, object_pairs_hook=_unique_keys)  # orjson keeps the last of duplicates, silently
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of a body that orjson accepted: refused when a key repeats (parsers disagree on which
    one wins, so a proxy or a signature check could read another document than the store)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise bad_request(f"the body has a duplicate key {key[:100]!r} in one object; send each key once", "body")
        seen.add(key)
    return dict(pairs)
