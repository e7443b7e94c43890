"""The SQLite schema: numbered migrations applied once each, or printed as one script."""

from __future__ import annotations

import sqlite3

from stepwell.errors import StoreError
from stepwell.store.sqlfile import load_migrations, load_queries

PACKAGE = "stepwell.store.sqlite"
Q = load_queries(PACKAGE)


def migrate(conn: sqlite3.Connection, at: int) -> list[int]:
    """Apply the missing migrations inside the caller's write transaction (BEGIN IMMEDIATE serialises
    processes that start at once); returns the versions applied."""
    applied: list[int] = []
    conn.execute(Q["migrate_create_table"])
    done = {version for (version,) in conn.execute(Q["applied_migrations"])}
    for version, name, sql in load_migrations(PACKAGE):
        if version in done:
            continue
        for statement in statements(sql):
            conn.execute(statement)
        conn.execute(Q["migrate_record"], (version, name, at))
        applied.append(version)
    return applied


def applied(conn: sqlite3.Connection) -> list[int]:
    """The versions applied, oldest first; [] when there is no migrations table (creates nothing)."""
    if conn.execute(Q["applied_migrations_table_exists"]).fetchone():
        return [version for (version,) in conn.execute(Q["applied_migrations"])]
    return []


def migration_script() -> str:
    """Every migration as one SQL script, with its bookkeeping: what `migrate()` applies to an empty database.

    For teams whose own tool applies schema changes (`stepwell migrate --print-sql`).
    """
    now_us = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
    parts = ["-- Stepwell schema for SQLite (what `stepwell migrate` applies).", Q["migrate_create_table"] + ";"]
    for version, name, script in load_migrations(PACKAGE):
        # version and name come from our own file names (NNNN_word.sql): nothing to quote.
        record = (
            "INSERT OR IGNORE INTO stepwell_migrations (version, name, applied_at)"
            f" VALUES ({version}, '{name}', {now_us});"
        )
        parts += [f"-- {name}", script.strip(), record]
    return "\n\n".join(parts) + "\n"


def statements(script: str) -> list[str]:
    found, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    if current.strip() and not all(part.strip().startswith("--") or not part.strip() for part in current.splitlines()):
        raise StoreError(f"migration has an unterminated statement: {current[:200]!r}")
    return found
