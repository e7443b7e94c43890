-- Version 3: flow control. Per-key ordering and concurrency keep waiting runs OUT of the ready
-- index (runs.hold), so that a key with 100,000 queued runs costs the other keys nothing.

ALTER TABLE runs ADD COLUMN flow INTEGER NOT NULL DEFAULT 0;   -- bit flags, see store/sqlite/flow.py
ALTER TABLE runs ADD COLUMN hold TEXT;           -- ordering | paused | parked | concurrency: not claimable
ALTER TABLE runs ADD COLUMN note TEXT;           -- why the start was pushed later: throttled | debounced | batching
ALTER TABLE runs ADD COLUMN ordering_key TEXT;
ALTER TABLE runs ADD COLUMN park INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN throttle BLOB;       -- JSON: scope, key, limit, period_us, burst
ALTER TABLE runs ADD COLUMN slots_held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN timeout_us INTEGER;
ALTER TABLE runs ADD COLUMN deadline_at INTEGER;

DROP INDEX runs_ready;
CREATE INDEX runs_ready ON runs (priority DESC, available_at)
    WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL;
CREATE INDEX runs_key_line ON runs (function, ordering_key) WHERE hold IN ('ordering', 'paused');
CREATE INDEX runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;

CREATE TABLE ordering_keys (
    function TEXT NOT NULL,
    key      TEXT NOT NULL,
    head     TEXT,                          -- the run holding the key (running, retrying, or parked)
    paused   INTEGER NOT NULL DEFAULT 0,
    parked   INTEGER NOT NULL DEFAULT 0,    -- the head dead-lettered under on_dead_letter='park'
    PRIMARY KEY (function, key)
) WITHOUT ROWID;

CREATE TABLE run_slots (
    run_id  TEXT NOT NULL,
    scope   TEXT NOT NULL,                  -- function#c<n>: one concurrency limit of a function
    key     TEXT NOT NULL,
    lim     INTEGER NOT NULL,
    waiting INTEGER NOT NULL DEFAULT 0,     -- 1: held back because the slot is full
    PRIMARY KEY (run_id, scope)
);
CREATE INDEX run_slots_waiting ON run_slots (scope, key) WHERE waiting = 1;

CREATE TABLE slots (
    scope  TEXT NOT NULL,
    key    TEXT NOT NULL,
    in_use INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

-- Generic cell rate algorithm state for throttles and rate limits: the theoretical arrival time.
CREATE TABLE gates (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    tat   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE debounces (
    function TEXT NOT NULL,
    key      TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    first_at INTEGER NOT NULL,
    PRIMARY KEY (function, key)
) WITHOUT ROWID;

CREATE TABLE batches (
    function TEXT NOT NULL,
    key      TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    size     INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (function, key)
) WITHOUT ROWID;

CREATE TABLE batch_events (
    run_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    function   TEXT NOT NULL,
    key        TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (function, key)
) WITHOUT ROWID;

-- Why an event started no run of a function that it triggers: deduplicated, rate_limited, debounced, batched.
CREATE TABLE event_skips (
    event_id TEXT NOT NULL,
    function TEXT NOT NULL,
    reason   TEXT NOT NULL,
    run_id   TEXT,
    PRIMARY KEY (event_id, function)
) WITHOUT ROWID;

ALTER TABLE waits ADD COLUMN kind TEXT NOT NULL DEFAULT 'wait';   -- wait | cancel
ALTER TABLE dead_letters ADD COLUMN ordering_key TEXT;
ALTER TABLE dead_letters ADD COLUMN key_policy TEXT;               -- skipped | parked
