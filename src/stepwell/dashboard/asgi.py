"""The dashboard as an ASGI application: sessions, CSRF, security headers, and the page table.

`create_dashboard(app)` returns a Starlette app that can be served alone, mounted into another ASGI
app (`Mount("/ops", create_dashboard(app))`: links follow the mount point), or served at `/` beside
the API by `stepwell server` and `stepwell dev`.

Every page goes through `_endpoint`: it finds the session (or sends the browser to the login page),
re-reads the key so that a revoked key is out at once, and for an action (POST) checks the CSRF
token, the Origin and the `operate` scope before the page's handler runs.

While the database is away (or full), every page and the login answer 503 with Retry-After in general
words: the store's message names the database's host and port, so it goes to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import anyio
import anyio.to_thread
import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepwell.app import App
from stepwell.clock import SystemClock
from stepwell.dashboard import views
from stepwell.dashboard.forms import BODY_TIMEOUT, Form, FormError, read_form
from stepwell.dashboard.sessions import COOKIE, IDLE, LIFETIME, Session, Sessions
from stepwell.errors import EventNotFound, RunNotFound, StepwellError, StoreFull, StoreUnavailable
from stepwell.model.apikeys import Scope as KeyScope
from stepwell.model.audit import NewAuditEntry
from stepwell.observe.logs import escape

log = logging.getLogger("stepwell.dashboard")
T = TypeVar("T")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
DEV_ACTOR = ("dev", "dev server (no keys)")
RETRY_UNAVAILABLE = 1  # seconds a browser waits before retrying when the database is away
RETRY_FULL = 30  # a full disk takes an operator: come back much later


class Refused(Exception):
    """An action the dashboard will not perform; `status` and the message go to the error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Page:
    """What a handler sees: the request, its session, the parsed form of an action, and the dashboard."""

    request: Request
    session: Session
    form: Form | None
    dashboard: Dashboard

    @property
    def app(self) -> App:
        return self.dashboard.app

    @property
    def root(self) -> str:
        return str(self.request.scope.get("root_path", "")).rstrip("/")

    def query(self, name: str, max_length: int = 1000) -> str | None:
        value = self.request.query_params.get(name, "").strip()
        if len(value) > max_length:
            raise Refused(400, f"{name} is longer than {max_length} characters")
        return value or None

    def field(self, name: str, max_length: int = 1000, *, strip: bool = True) -> str | None:
        """A form field; `strip=False` for values whose spaces matter (an ordering key is any string)."""
        value = (self.form.get(name) if self.form is not None else None) or ""
        value = value.strip() if strip else value
        if len(value) > max_length:
            raise Refused(400, f"{name} is longer than {max_length} characters")
        return value or None

    def fields(self, name: str) -> list[str]:
        return [value for value in (self.form.getlist(name) if self.form else []) if value]

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking App method on a worker thread (the store blocks)."""
        return await self.dashboard.call(fn, *args, **kwargs)

    def now(self) -> datetime:
        return self.app.clock.now()

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return self.dashboard.render(self, template, status, **context)

    def redirect(self, path: str, flash: str = "") -> Response:
        if flash:
            self.session.flash = flash
        return RedirectResponse(self.root + path, status_code=303)

    async def audit(self, action: str, target: str, detail: str = "") -> None:
        entry = NewAuditEntry(self.session.actor_id, self.session.actor_name, action, target, detail)
        await self.call(self.app.store.append_audit, entry)


Handler = Callable[[Page], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class PageRoute:
    method: str
    path: str
    handler: Handler
    acts: bool = False  # an action: needs the CSRF token and the operate scope


class Dashboard:
    def __init__(
        self,
        app: App,
        *,
        auth: bool,
        body_timeout: float = BODY_TIMEOUT,
        session_idle: float = IDLE,
        session_lifetime: float = LIFETIME,
    ) -> None:
        self.app = app
        self.auth = auth
        self.body_timeout = body_timeout
        self.sessions = Sessions(app.clock, idle=session_idle, lifetime=session_lifetime)
        self.threads = anyio.CapacityLimiter(16)
        loader = jinja2.FileSystemLoader(str(files("stepwell.dashboard") / "templates"))
        self.templates = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
        self.templates.globals.update(duration=views.duration, ago=views.ago)
        self.templates.filters["segment"] = views.segment  # a path segment; `urlencode` for query values

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self.threads)

    def render(self, page: Page, template: str, status: int = 200, **context: Any) -> Response:
        html = self.templates.get_template(template).render(
            root=page.root, session=page.session, flash=page.session.take_flash(), now=page.now(),
            auth=self.auth, path=page.request.url.path, **context,
        )  # fmt: skip
        return HTMLResponse(html, status, headers={"cache-control": "no-store"})

    def unavailable(self, request: Request, err: StoreUnavailable | StoreFull) -> Response:
        """503 in general words, with Retry-After; the store's message (host, port) goes to the log only."""
        full = isinstance(err, StoreFull)
        request_id = str(request.scope.get("state", {}).get("request_id", ""))  # set when served beside the API
        log.warning("dashboard %s %s (request %s): %s", request.method, escape(request.url.path), request_id or "-",
                    escape(str(err)))  # fmt: skip
        message = (
            "The database is out of space; an operator must free space." if full
            else "The database is unavailable; try again shortly."
        )  # fmt: skip
        root = str(request.scope.get("root_path", "")).rstrip("/")
        html = self.templates.get_template("unavailable.html").render(root=root, message=message, request_id=request_id)
        retry = RETRY_FULL if full else RETRY_UNAVAILABLE
        return HTMLResponse(html, 503, headers={"cache-control": "no-store", "retry-after": str(retry)})

    async def session_of(self, request: Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None or not self.auth:
            return session
        stored = await self.call(self.app.store.get_api_key, session.actor_id)
        if stored is None or stored.key.revoked_at is not None:  # revoked: its sessions end now
            self.sessions.drop(session.id)
            return None
        return session


def create_dashboard(
    app: App,
    *,
    auth: bool = True,
    body_timeout: float = BODY_TIMEOUT,
    session_idle: float = IDLE,
    session_lifetime: float = LIFETIME,
) -> Starlette:
    """The dashboard of `app`. `auth=False` (development on loopback) acts as one operator, 'dev'.
    `body_timeout`: seconds a browser has to send a whole form (a slower one gets 408).
    `session_idle` / `session_lifetime`: seconds a login lasts without use / at most (12 h each)."""
    from stepwell.dashboard import insight, pages

    dashboard = Dashboard(
        app, auth=auth, body_timeout=body_timeout, session_idle=session_idle, session_lifetime=session_lifetime
    )
    routes: list[Route | Mount] = [
        Route("/login", _login_page(dashboard), methods=["GET", "POST"]),
        Route("/logout", _logout(dashboard), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(files("stepwell.dashboard") / "static")), name="static"),
    ]
    routes += [
        Route(route.path, _endpoint(dashboard, route), methods=[route.method], name=route.path)
        for route in (*pages.ROUTES, *insight.ROUTES)
    ]
    handlers = {HTTPException: _not_found}
    middleware = [Middleware(ServerTiming), Middleware(SecurityHeaders)]
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)  # type: ignore[arg-type]


class ServerTiming:
    """`Server-Timing: app;dur=<ms>` on every page: the server's own time, which the dashboard
    benchmark reports (no network in it), and which a browser's devtools show beside each request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.clock = SystemClock()  # real elapsed time, even when the app runs on a virtual clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        begun = self.clock.monotonic()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (self.clock.monotonic() - begun) * 1000
                message["headers"] = [*message.get("headers", []), (b"server-timing", f"app;dur={took:.1f}".encode())]
            await send(message)

        await self.app(scope, receive, send_with_timing)


class SecurityHeaders:
    """Adds the security headers (CSP without inline scripts or styles, nosniff, no framing) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _endpoint(dashboard: Dashboard, route: PageRoute) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            session = await dashboard.session_of(request)
        except (StoreUnavailable, StoreFull) as err:
            return dashboard.unavailable(request, err)
        fresh = None
        if session is None:
            if dashboard.auth:
                if route.method != "GET":
                    return _plain(403, "log in first")
                root = str(request.scope.get("root_path", "")).rstrip("/")
                path = quote(str(request.scope["path"]), safe="/")  # decoded in the scope; `url.path` is half-encoded
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{root}/login?next={quote(target, safe='/')}", status_code=303)
            session = fresh = dashboard.sessions.create(*DEV_ACTOR, can_operate=True)
        form = None
        if route.acts:
            try:
                form = await read_form(request, dashboard.body_timeout)
            except FormError as err:
                return _plain(err.status, str(err))
            refusal = _refuse_action(request, session, form)
            if refusal:
                return _plain(403, refusal)
        page = Page(request, session, form, dashboard)
        try:
            response = await route.handler(page)
        except Refused as err:
            response = page.render("error.html", err.status, message=err.message)
        except (RunNotFound, EventNotFound) as err:
            response = page.render("error.html", 404, message=str(err))
        except (StoreUnavailable, StoreFull) as err:
            response = dashboard.unavailable(request, err)
        except StepwellError as err:
            response = page.render("error.html", 400, message=str(err))
        if fresh is not None:
            _set_cookie(response, request, fresh, dashboard.sessions.lifetime)
        return response

    return endpoint


def _refuse_action(request: Request, session: Session, form: Form) -> str | None:
    """Why an action is refused, or None: a foreign Origin, a missing or wrong CSRF token, a read-only key."""
    if not _same_origin(request):
        return "refused: the request came from another site"
    if not session.csrf_ok(form.get("csrf")):
        return "refused: the form's CSRF token is missing or stale; reload the page and try again"
    if not session.can_operate:
        return "refused: this API key may look but not act (it lacks the 'operate' scope)"
    return None


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # no Origin (old browsers, curl): the CSRF token still guards
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _login_page(dashboard: Dashboard) -> Callable[[Request], Awaitable[Response]]:
    async def login(request: Request) -> Response:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        target = _safe_next(request.query_params.get("next"), root)
        if not dashboard.auth:
            return RedirectResponse(target, status_code=303)
        error = ""
        if request.method == "POST":
            if not _same_origin(request):
                return _plain(403, "refused: the request came from another site")
            try:
                token = (await read_form(request, dashboard.body_timeout)).get("token")
            except FormError as err:
                return _plain(err.status, str(err))
            try:
                key = await dashboard.call(dashboard.app.check_api_key, token.strip()) if token else None
            except (StoreUnavailable, StoreFull) as err:
                return dashboard.unavailable(request, err)
            if key is not None and key.allows(KeyScope.READ):
                session = dashboard.sessions.create(key.id, key.name, can_operate=key.allows(KeyScope.OPERATE))
                response = RedirectResponse(target, status_code=303)
                _set_cookie(response, request, session, dashboard.sessions.lifetime)
                return response
            error = "That API key is unknown, revoked, or lacks the 'read' scope."
        html = dashboard.templates.get_template("login.html").render(root=root, error=error, next=target)
        return HTMLResponse(html, 401 if error else 200, headers={"cache-control": "no-store"})

    return login


def _logout(dashboard: Dashboard) -> Callable[[Request], Awaitable[Response]]:
    async def logout(request: Request) -> Response:
        session = dashboard.sessions.get(request.cookies.get(COOKIE))
        try:
            token = (await read_form(request, dashboard.body_timeout)).get("csrf")
        except FormError as err:
            return _plain(err.status, str(err))
        if session is None or not session.csrf_ok(token):
            return _plain(403, "refused: the form's CSRF token is missing or stale")
        dashboard.sessions.drop(session.id)
        root = str(request.scope.get("root_path", "")).rstrip("/")
        response = RedirectResponse(f"{root}/login", status_code=303)
        response.delete_cookie(COOKIE, path=root or "/")
        return response

    return logout


def _safe_next(target: str | None, root: str) -> str:
    """Only a path on this dashboard: never another host (`//evil`, `https://...`)."""
    if not target or not target.startswith(root + "/") or target.startswith("//") or "\\" in target:
        return root + "/runs"
    return target


def _set_cookie(response: Response, request: Request, session: Session, lifetime: float) -> None:
    root = str(request.scope.get("root_path", "")).rstrip("/")
    response.set_cookie(
        COOKIE, session.id, max_age=int(lifetime), path=root or "/", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def _plain(status: int, message: str) -> Response:
    return Response(message, status, media_type="text/plain; charset=utf-8")


async def _not_found(request: Request, exc: HTTPException) -> Response:
    return _plain(exc.status_code, "no such page" if exc.status_code == 404 else str(exc.detail))
