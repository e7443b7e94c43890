"""The dashboard's forms: url-encoded bodies only (every form is a plain HTML form), bounded in size
and in time.

Parsed here rather than with Starlette's form parser, which needs python-multipart for a format
the dashboard never uses. A declared Content-Length over the limit is refused before a byte is read;
the body is also counted as it arrives (a client may lie, or send it chunked), and must arrive within
`timeout` seconds: a client that trickles it is cut off with 408 instead of holding its connection.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import anyio
from starlette.requests import ClientDisconnect, Request

MAX_BODY = 4 * 1024 * 1024  # bytes: a bulk redrive of a page of ids, or a 100 KB key, fits many times
MAX_FIELDS = 20_000
BODY_TIMEOUT = 10.0  # seconds to receive a whole form (the API's `Limits.body_timeout`)


class FormError(Exception):
    """A form the dashboard will not read (too large, too slow, not url-encoded); `status` is the answer's."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Form:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str) -> str | None:
        return next((value for key, value in self._pairs if key == name), None)

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]


async def read_form(request: Request, timeout: float = BODY_TIMEOUT) -> Form:
    kind = request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError(f"forms must be application/x-www-form-urlencoded, not {kind}")
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise FormError("Content-Length is not a number")
    if declared is not None and int(declared) > MAX_BODY:
        raise FormError(f"the form is larger than {MAX_BODY} bytes", 413)
    body = await _read_body(request, timeout)
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as err:
        raise FormError(f"the form cannot be read ({err})") from None
    return Form(pairs)


async def _read_body(request: Request, timeout: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise FormError(f"the form is larger than {MAX_BODY} bytes", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise FormError(f"the form did not arrive within {timeout:g} s", 408) from None
    except ClientDisconnect:
        raise FormError("the browser went away before the form was complete") from None
    return b"".join(chunks)
