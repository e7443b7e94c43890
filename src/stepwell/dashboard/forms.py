"""The dashboard's forms: url-encoded bodies only (every form is a plain HTML form), bounded in size.

Parsed here rather than with Starlette's form parser, which needs python-multipart for a format
the dashboard never uses.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_BODY = 4 * 1024 * 1024  # bytes: a bulk redrive of a page of ids, or a 100 KB key, fits many times
MAX_FIELDS = 20_000


class FormError(Exception):
    """A form the dashboard will not read (too large, not url-encoded)."""


class Form:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str) -> str | None:
        return next((value for key, value in self._pairs if key == name), None)

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]


async def read_form(request: Request) -> Form:
    kind = request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError(f"forms must be application/x-www-form-urlencoded, not {kind}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise FormError(f"the form is larger than {MAX_BODY} bytes")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as err:
        raise FormError(f"the form cannot be read ({err})") from None
    return Form(pairs)
