"""Registering a web app's functions through the server's HTTP API: the web app needs no database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx

from stepwell.errors import RemoteError, StoreUnavailable
from stepwell.model.definition import definition_of

if TYPE_CHECKING:
    from stepwell.app import App

REGISTER_PATH = "/api/v1/functions/register"


def register_remotely(app: App, server: str, token: str | None, url: str, functions: Sequence[str]) -> None:
    """POST the app's definitions and its push URL; RemoteError when refused, StoreUnavailable when unreachable."""
    body = {
        "app": app.name,
        "definitions": [definition_of(app.name, spec).document for spec in app.registry.specs()],
        "push_url": url,
        "push_functions": list(functions),
    }
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(server.rstrip("/") + REGISTER_PATH, json=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as error:
        raise StoreUnavailable(f"stepwell server {server} unreachable: {error}") from None
    if response.status_code != 200:
        raise RemoteError(response.status_code, "registration_refused", response.text[:300])
