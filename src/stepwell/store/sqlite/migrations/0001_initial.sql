-- Stepwell schema, version 1 (SQLite). Times are INTEGER microseconds since the Unix epoch, UTC:
-- integers keep arithmetic and comparisons exact.

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    data        BLOB NOT NULL,
    ts          INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    disposition TEXT NOT NULL
);
CREATE INDEX events_received_at ON events (received_at);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    function         TEXT NOT NULL,
    event_id         TEXT,
    input            BLOB,
    input_name       TEXT,
    parent_id        TEXT,
    replay_of        TEXT,
    on_failure       TEXT,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 1,
    max_attempts     INTEGER NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    available_at     INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    output           BLOB,
    error            BLOB,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    ended_at         INTEGER
);
CREATE INDEX runs_ready ON runs (priority DESC, available_at) WHERE status IN ('queued', 'sleeping');
CREATE INDEX runs_leased ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_event ON runs (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_function_created ON runs (function, created_at);
CREATE INDEX runs_status_ended ON runs (status, ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE steps (
    run_id     TEXT NOT NULL,
    id         TEXT NOT NULL,
    position   INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 1,
    output     BLOB,
    error      BLOB,
    wake_at    INTEGER,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    PRIMARY KEY (run_id, id)
) WITHOUT ROWID;

CREATE TABLE run_errors (
    run_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    error   BLOB NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    run_id        TEXT PRIMARY KEY,
    function      TEXT NOT NULL,
    error         BLOB NOT NULL,
    reason        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    failed_at     INTEGER NOT NULL,
    redriven_at   INTEGER,
    redrive_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_open ON dead_letters (function, failed_at) WHERE redriven_at IS NULL;
