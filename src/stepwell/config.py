"""Reading the database URL: `sqlite:///relative.db`, `sqlite:////abs/path.db`, `postgresql://...`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stepwell.errors import ConfigurationError

DEFAULT_SQLITE_PATH = Path(".stepwell") / "stepwell.db"
ENV_DATABASE_URL = "STEPWELL_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    backend: str  # "sqlite" | "postgresql"
    url: str
    path: Path | None = None


def resolve_database_url(url: str | None) -> DatabaseURL:
    """The URL given, else $STEPWELL_DATABASE_URL, else the SQLite file .stepwell/stepwell.db."""
    url = url or os.environ.get(ENV_DATABASE_URL) or ""
    if not url:
        return DatabaseURL("sqlite", f"sqlite:///{DEFAULT_SQLITE_PATH}", DEFAULT_SQLITE_PATH)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ConfigurationError(f"database URL {url!r} names no file; write sqlite:///path/to/file.db")
        return DatabaseURL("sqlite", url, Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        return DatabaseURL("postgresql", url)
    raise ConfigurationError(
        f"database URL {url!r} is not supported; use sqlite:///path/to/file.db or postgresql://user@host/db"
    )
