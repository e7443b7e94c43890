"""The web app's side at start: configuration from arguments and the environment, and registration.

An app that serves its functions by push registers them with its public URL, either through the
server's API (`STEPWELL_SERVER` and `STEPWELL_TOKEN`, as the CLI does: the web app needs no
database credentials) or directly in the store when it has a database URL. Registration runs on
a background thread with retries, so a web app starts even while the server is still starting.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stepwell.errors import ConfigurationError, StepwellError
from stepwell.push.endpoint import Endpoint
from stepwell.push.guard import check_url
from stepwell.push.signing import Verifier, parse_keys

if TYPE_CHECKING:
    from stepwell.app import App

log = logging.getLogger("stepwell.push")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    url: str | None
    functions: tuple[str, ...]
    verifier: Verifier


def serve_config(
    app: App,
    *,
    url: str | None,
    signing_key: str | Sequence[str] | None,
    functions: Sequence[str] | None,
    dev: bool,
) -> ServeConfig:
    url = url or os.environ.get("STEPWELL_SERVE_URL") or None
    if url is not None:
        check_url(url)
    keys = parse_keys(signing_key if signing_key is not None else os.environ.get("STEPWELL_SIGNING_KEY"))
    if not keys and not dev:
        raise ConfigurationError(
            "push endpoint: no signing key (signing_key= or STEPWELL_SIGNING_KEY); every request would be refused. "
            "For development on loopback only, pass dev=True"
        )
    names = tuple(functions) if functions is not None else tuple(app.registry.names())
    unknown = [name for name in names if name not in app.registry]
    if unknown:
        raise ConfigurationError(f"push endpoint: {', '.join(unknown)} not function(s) of app {app.name!r}")
    verifier = Verifier(keys) if keys else Verifier.dev()
    return ServeConfig(url, names, verifier)


def endpoint_for(app: App, config: ServeConfig) -> Endpoint:
    return Endpoint(
        app.registry,
        app.clock,
        config.verifier,
        max_event_bytes=app.max_event_bytes,
        max_output_bytes=app.max_output_bytes,
    )


def register_push(app: App, url: str, functions: Sequence[str]) -> None:
    """Register the app's functions, `functions` pushed to `url` (the others pulled). Server or store."""
    server = os.environ.get("STEPWELL_SERVER")
    if server and app.database_url is None and not os.environ.get("STEPWELL_DATABASE_URL"):
        from stepwell.push.remote import register_remotely

        register_remotely(app, server, os.environ.get("STEPWELL_TOKEN"), url, functions)
        return
    app.register()
    app.store.set_push_endpoints(app.name, {name: url for name in functions})


def register_in_background(app: App, url: str, functions: Sequence[str], attempts: int = 60) -> threading.Thread:
    def loop() -> None:
        for attempt in range(attempts):
            try:
                register_push(app, url, functions)
                log.info("push: %d function(s) of %s registered at %s", len(functions), app.name, url)
                return
            except StepwellError as error:
                log.warning("push: registration failed (%s); retrying", error)
                time.sleep(min(0.5 * 2**attempt, 10.0))
        log.error("push: gave up registering %s at %s", app.name, url)

    thread = threading.Thread(target=loop, name="stepwell-push-register", daemon=True)
    thread.start()
    return thread
