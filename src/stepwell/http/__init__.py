"""The HTTP API (`/api/v1`): events in from any service, runs and dead letters out, operations.

Built on the App (never on a concrete store): `create_app(app)` is the ASGI application,
`serve(...)` and `ServerThread` run it under uvicorn.
"""

from stepwell.http.asgi import create_app
from stepwell.http.envelope import is_loopback
from stepwell.http.limits import Limits
from stepwell.http.server import ServerThread, serve

__all__ = ["Limits", "ServerThread", "create_app", "is_loopback", "serve"]
