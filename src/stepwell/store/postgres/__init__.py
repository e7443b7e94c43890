"""The PostgreSQL store.

Its modules match the SQLite store's one for one (a module per group of Store verbs, and the rules
they execute), so the two read side by side; see docs/internals/architecture.md. Only the modules
in OWN_MODULES are PostgreSQL's alone (tests/test_store_layout.py holds the two lists equal beyond
them).
"""

OWN_MODULES = frozenset(
    {
        "listener",  # LISTEN in a thread that reconnects: wake-ups across hosts
        "options",  # pool, timeouts and session settings, also from the URL's stepwell_* parameters
        "outbox",  # TransactionalEnqueue: the caller's own connection and transaction
        "params",  # statement parameters as arrays: set-based batches
        "statements",  # the pool's connection type, running named statements, driver errors translated
    }
)
