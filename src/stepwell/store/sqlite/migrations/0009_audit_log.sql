-- Version 9: the audit log of operator actions (the dashboard writes one row per action).

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor_id   TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    detail     TEXT NOT NULL
);

-- Indexes for the dashboard's filters (each page of runs is read through one; see store/sqlite/browse.sql).
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_status_created ON runs (status, created_at);
CREATE INDEX runs_key_created ON runs (ordering_key, created_at) WHERE ordering_key IS NOT NULL;
CREATE INDEX runs_parent_created ON runs (parent_id, created_at) WHERE parent_id IS NOT NULL;
CREATE INDEX dead_letters_open_failed ON dead_letters (failed_at) WHERE redriven_at IS NULL;
