-- Version 3 (PostgreSQL): flow control. Same meaning as SQLite's 0003. Per-key ordering and
-- concurrency keep waiting runs OUT of the ready index (runs.hold), so that a key with 100,000
-- queued runs costs the other keys nothing.
--
-- Many transactions change these rows at once (READ COMMITTED), so each line or limit has one
-- row that serialises them: ordering_keys per (function, key), slots per (scope, key), gates,
-- idempotency_keys, debounces and batches per key. Writers lock that row first (SELECT ... FOR
-- UPDATE, or INSERT ... ON CONFLICT DO UPDATE, which waits for a concurrent insert); a row with
-- NULL run_id (or head) is only such a lock, written by a writer that found no row. See
-- store/postgres/flow.py for the lock order.

-- Insertion order: "the next run in a key's line" is the one with the lowest seq.
ALTER TABLE runs ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE runs ADD COLUMN flow integer NOT NULL DEFAULT 0;   -- bit flags, see store/postgres/flow.py
ALTER TABLE runs ADD COLUMN hold text;            -- ordering | paused | concurrency: not claimable
ALTER TABLE runs ADD COLUMN note text;            -- why the start was pushed later: throttled | debounced | batching
ALTER TABLE runs ADD COLUMN ordering_key text;
ALTER TABLE runs ADD COLUMN park boolean NOT NULL DEFAULT false;
ALTER TABLE runs ADD COLUMN throttle bytea;       -- JSON: scope, key, limit, period_us, burst
ALTER TABLE runs ADD COLUMN slots_held boolean NOT NULL DEFAULT false;
ALTER TABLE runs ADD COLUMN timeout interval;
ALTER TABLE runs ADD COLUMN deadline_at timestamptz;

DROP INDEX runs_ready;
-- Ready runs best first; among equals, in arrival order.
CREATE INDEX runs_ready ON runs (priority DESC, available_at, seq)
    WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL;
CREATE INDEX runs_key_line ON runs (function, ordering_key, seq) WHERE hold IN ('ordering', 'paused');
CREATE INDEX runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;

CREATE TABLE ordering_keys (
    function text NOT NULL,
    key      text NOT NULL,
    head     text,                               -- the run holding the key (running, retrying, or parked)
    paused   boolean NOT NULL DEFAULT false,
    parked   boolean NOT NULL DEFAULT false,     -- the head dead-lettered under on_dead_letter='park'
    PRIMARY KEY (function, key)
);

CREATE TABLE run_slots (
    run_id  text NOT NULL,
    scope   text NOT NULL,                       -- function#c<n>: one concurrency limit of a function
    key     text NOT NULL,
    lim     integer NOT NULL,
    waiting boolean NOT NULL DEFAULT false,      -- held back because the slot is full
    seq     bigint GENERATED ALWAYS AS IDENTITY, -- waiters are promoted in this order
    PRIMARY KEY (run_id, scope)
);
CREATE INDEX run_slots_waiting ON run_slots (scope, key, seq) WHERE waiting;

CREATE TABLE slots (
    scope  text NOT NULL,
    key    text NOT NULL,
    in_use integer NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Generic cell rate algorithm state for throttles and rate limits: the theoretical arrival time.
CREATE TABLE gates (
    scope text NOT NULL,
    key   text NOT NULL,
    tat   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE debounces (
    function text NOT NULL,
    key      text NOT NULL,
    run_id   text,
    first_at timestamptz NOT NULL,
    PRIMARY KEY (function, key)
);

CREATE TABLE batches (
    function text NOT NULL,
    key      text NOT NULL,
    run_id   text,
    size     integer NOT NULL,
    count    integer NOT NULL,
    PRIMARY KEY (function, key)
);

CREATE TABLE batch_events (
    run_id   text NOT NULL,
    seq      integer NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE idempotency_keys (
    function   text NOT NULL,
    key        text NOT NULL,
    run_id     text,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (function, key)
);

-- Why an event started no run of a function that it triggers: deduplicated, rate_limited, debounced, batched.
CREATE TABLE event_skips (
    event_id text NOT NULL,
    function text NOT NULL,
    reason   text NOT NULL,
    run_id   text,
    PRIMARY KEY (event_id, function)
);

ALTER TABLE waits ADD COLUMN kind text NOT NULL DEFAULT 'wait';   -- wait | cancel
ALTER TABLE dead_letters ADD COLUMN ordering_key text;
ALTER TABLE dead_letters ADD COLUMN key_policy text;               -- skipped | parked
