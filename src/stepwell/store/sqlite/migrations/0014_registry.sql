-- Version 14: the function registry. Every app writes its functions' definitions here when it starts;
-- ingest routes events from these rows, so a producer needs none of the user's code.

CREATE TABLE registry (
    app           TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,      -- SHA-256 of the canonical definition document
    definition    BLOB NOT NULL,      -- the definition as JSON (model/definition.py)
    registered_at INTEGER NOT NULL,   -- first registered
    updated_at    INTEGER NOT NULL,   -- the current version's registration, or the retirement
    retired_at    INTEGER,            -- the app re-registered without it (or another app took the name)
    PRIMARY KEY (app, name)
) WITHOUT ROWID;
-- a function name is served by one app at a time: runs and flow control are keyed by the name
CREATE UNIQUE INDEX registry_served_name ON registry (name) WHERE retired_at IS NULL;

-- Every change a registration made: added, changed (a new version), retired, moved (to another app).
CREATE TABLE registry_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    app         TEXT NOT NULL,
    name        TEXT NOT NULL,
    change      TEXT NOT NULL,
    old_version TEXT,
    new_version TEXT
);

-- One row: bumped by every registration that changed something; ingest checks it in its transaction.
CREATE TABLE registry_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO registry_state (id, generation) VALUES (1, 0);
