"""Reading the database URL: `sqlite:///relative.db`, `sqlite:////abs/path.db`, `postgresql://...`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from stepwell.errors import ConfigurationError

DEFAULT_SQLITE_PATH = Path(".stepwell") / "stepwell.db"
ENV_DATABASE_URL = "STEPWELL_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    backend: str  # "sqlite" | "postgresql"
    url: str
    path: Path | None = None  # SQLite: absolute

    def describe(self) -> str:
        """Which database, in words a user can check: `SQLite /abs/path.db`, `PostgreSQL user@host:port/db`.

        No password, and of the query only the search_path, so that it can be printed anywhere.
        """
        if self.path is not None:
            return f"SQLite {self.path}"
        parts = urlsplit(self.url)
        where = f"{parts.hostname or 'localhost'}{f':{parts.port}' if parts.port else ''}{parts.path or ''}"
        user = f"{unquote(parts.username)}@" if parts.username else ""
        options = parse_qs(parts.query).get("options", [""])[0]
        schema = options.split("search_path=", 1)[1].split()[0] if "search_path=" in options else ""
        return f"PostgreSQL {user}{where}" + (f" (schema {schema})" if schema else "")


def resolve_database_url(url: str | None) -> DatabaseURL:
    """The URL given, else $STEPWELL_DATABASE_URL, else the SQLite file .stepwell/stepwell.db.

    A SQLite path is made absolute here, against the current folder, so that every message can name
    the file actually used: a relative path silently means another file in another folder.
    """
    url = url or os.environ.get(ENV_DATABASE_URL) or ""
    if not url:
        path = DEFAULT_SQLITE_PATH.absolute()
        return DatabaseURL("sqlite", f"sqlite:///{path}", path)
    if url.startswith("sqlite:///"):
        path_text = url.removeprefix("sqlite:///")
        if not path_text:
            raise ConfigurationError(f"database URL {url!r} names no file; write sqlite:///path/to/file.db")
        return DatabaseURL("sqlite", url, Path(path_text).absolute())
    if url.startswith(("postgresql://", "postgres://")):
        return DatabaseURL("postgresql", url)
    raise ConfigurationError(
        f"database URL {url!r} is not supported; use sqlite:///path/to/file.db or postgresql://user@host/db"
    )
