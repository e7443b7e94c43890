-- Version 9: the audit log of operator actions (the dashboard writes one row per action). Same table as SQLite's 0009.

CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    actor_id   text NOT NULL,
    actor_name text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    detail     text NOT NULL
);

-- Indexes for the dashboard's filters (the same as SQLite's 0009).
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_status_created ON runs (status, created_at);
CREATE INDEX runs_key_created ON runs (ordering_key, created_at) WHERE ordering_key IS NOT NULL;
CREATE INDEX runs_parent_created ON runs (parent_id, created_at) WHERE parent_id IS NOT NULL;
CREATE INDEX dead_letters_open_failed ON dead_letters (failed_at) WHERE redriven_at IS NULL;
