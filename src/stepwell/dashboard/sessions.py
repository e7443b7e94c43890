"""Dashboard sessions: server-side, so the cookie carries a random id and never the API key.

A session remembers which key logged in (id and name, for the audit log), whether it may act, and
its CSRF token. Sessions live in the server process's memory: a restart logs everyone out, and a
fleet of servers behind a load balancer needs sticky sessions (documented in the dashboard guide).
Every request re-reads the key, so revoking it ends its sessions at once.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "stepwell_session"
LIFETIME = 12 * 3600.0  # seconds a session lasts without being used
MAX_SESSIONS = 10_000  # beyond: the least recently used is forgotten


@dataclass(slots=True)
class Session:
    id: str
    actor_id: str
    actor_name: str
    can_operate: bool
    csrf: str
    used: float
    flash: str = ""  # one message shown on the next page (the outcome of an action)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())

    def take_flash(self) -> str:
        message, self.flash = self.flash, ""
        return message


class Sessions:
    def __init__(self, lifetime: float = LIFETIME) -> None:
        self._lifetime = lifetime
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, actor_id: str, actor_name: str, *, can_operate: bool) -> Session:
        session = Session(
            secrets.token_urlsafe(32), actor_id, actor_name, can_operate, secrets.token_urlsafe(32), time.monotonic()
        )
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                oldest = min(self._by_id.values(), key=lambda s: s.used)
                del self._by_id[oldest.id]
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if now - session.used > self._lifetime:
                del self._by_id[session_id]
                return None
            session.used = now
            return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)
