"""The embedded SQLite store.

Its modules match the PostgreSQL store's one for one (a module per group of Store verbs, and the
rules they execute), so the two read side by side; see docs/internals/architecture.md. Only the
modules in OWN_MODULES are SQLite's alone (tests/test_store_layout.py holds the two lists equal
beyond them).
"""

OWN_MODULES = frozenset(
    {
        "groupcommit",  # writers of one process share a transaction and its COMMIT (one writer connection)
        "schema",  # migrations applied from scratch, and the script of them all
        "times",  # integer microseconds: SQLite has no timestamp type
        "watch",  # cross-process wake-ups from PRAGMA data_version (no LISTEN/NOTIFY)
        "writelock",  # BEGIN IMMEDIATE, retried briskly: one writer per file
    }
)
