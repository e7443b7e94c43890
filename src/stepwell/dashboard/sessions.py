"""Dashboard sessions: server-side, so the cookie carries a random id and never the API key.

A session remembers which key logged in (id and name, for the audit log), whether it may act, and
its CSRF token. Sessions live in the server process's memory: a restart logs everyone out, and a
fleet of servers behind a load balancer needs sticky sessions (documented in the dashboard guide).
Every request re-reads the key, so revoking it ends its sessions at once.

A session ends after `idle` seconds without use, and in any case `lifetime` seconds after the login
(12 hours each by default): a session cookie stolen from a busy operator's browser stops working
within the lifetime, however often it is used. Time comes from the app's clock.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass

from stepwell.clock import Clock
from stepwell.errors import ConfigurationError

COOKIE = "stepwell_session"
IDLE = 12 * 3600.0  # seconds a session lasts without being used
LIFETIME = 12 * 3600.0  # seconds a session lasts after its login, however busy: then log in again
MAX_SESSIONS = 10_000  # beyond: the least recently used is forgotten


@dataclass(slots=True)
class Session:
    id: str
    actor_id: str
    actor_name: str
    can_operate: bool
    csrf: str
    used: float  # the clock's monotonic seconds at the last request
    created: float  # ... at the login
    flash: str = ""  # one message shown on the next page (the outcome of an action)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())

    def take_flash(self) -> str:
        message, self.flash = self.flash, ""
        return message


class Sessions:
    def __init__(self, clock: Clock, *, idle: float = IDLE, lifetime: float = LIFETIME) -> None:
        for name, value in (("session_idle", idle), ("session_lifetime", lifetime)):
            if not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        self.clock, self.idle, self.lifetime = clock, idle, lifetime
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, actor_id: str, actor_name: str, *, can_operate: bool) -> Session:
        now = self.clock.monotonic()
        session = Session(
            secrets.token_urlsafe(32), actor_id, actor_name, can_operate, secrets.token_urlsafe(32), now, now
        )
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                oldest = min(self._by_id.values(), key=lambda s: s.used)
                del self._by_id[oldest.id]
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of that id, marked as used now; None (and forgotten) once idle or too old."""
        if not session_id:
            return None
        now = self.clock.monotonic()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if now - session.used > self.idle or now - session.created > self.lifetime:
                del self._by_id[session_id]
                return None
            session.used = now
            return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)
