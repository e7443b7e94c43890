-- Stepwell schema, version 1 (PostgreSQL). Same tables, columns and indexes as SQLite's 0001.
--
-- Times are timestamptz (the database clock rules leases and due times). JSON is stored as
-- bytea holding the exact UTF-8 bytes the engine wrote, as on SQLite: no server-side parse
-- on the hot path, byte-for-byte round trips, and the same decoder on both backends.
-- Operators can still query it: convert_from(data, 'UTF8')::jsonb.

CREATE TABLE events (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    data        bytea NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    disposition text NOT NULL
);
CREATE INDEX events_received_at ON events (received_at);

-- The queue: every claim, heartbeat and settlement updates these rows, so vacuum early.
CREATE TABLE runs (
    id               text PRIMARY KEY,
    function         text NOT NULL,
    event_id         text,
    input            bytea,
    input_name       text,
    parent_id        text,
    replay_of        text,
    on_failure       text,
    status           text NOT NULL,
    attempt          integer NOT NULL DEFAULT 1,
    max_attempts     integer NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    available_at     timestamptz NOT NULL,
    lease_owner      text,
    lease_token      text,
    lease_expires_at timestamptz,
    output           bytea,
    error            bytea,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    ended_at         timestamptz
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
-- claim_runs walks this index only: ready rows, best first (tests/test_postgres_explain.py).
CREATE INDEX runs_ready ON runs (priority DESC, available_at) WHERE status IN ('queued', 'sleeping');
CREATE INDEX runs_leased ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_event ON runs (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_function_created ON runs (function, created_at);
CREATE INDEX runs_status_ended ON runs (status, ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE steps (
    run_id     text NOT NULL,
    id         text NOT NULL,
    position   integer NOT NULL,
    kind       text NOT NULL,
    status     text NOT NULL,
    attempts   integer NOT NULL DEFAULT 1,
    output     bytea,
    error      bytea,
    wake_at    timestamptz,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    PRIMARY KEY (run_id, id)
);

CREATE TABLE run_errors (
    run_id  text NOT NULL,
    seq     integer NOT NULL,
    attempt integer NOT NULL,
    error   bytea NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE dead_letters (
    run_id        text PRIMARY KEY,
    function      text NOT NULL,
    error         bytea NOT NULL,
    reason        text NOT NULL,
    attempts      integer NOT NULL,
    failed_at     timestamptz NOT NULL,
    redriven_at   timestamptz,
    redrive_count integer NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_open ON dead_letters (function, failed_at) WHERE redriven_at IS NULL;
