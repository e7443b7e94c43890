-- Version 2 (PostgreSQL): runs that wait for events, child runs (invoke) and fan-outs.
-- Same meaning as SQLite's 0002.

ALTER TABLE runs ADD COLUMN parent_step text;
ALTER TABLE runs ADD COLUMN child_index integer;
-- Set when something the run waits for happens while it is running; a suspension then resumes at once.
ALTER TABLE runs ADD COLUMN wake_requested boolean NOT NULL DEFAULT false;

DROP INDEX runs_ready;
CREATE INDEX runs_ready ON runs (priority DESC, available_at) WHERE status IN ('queued', 'sleeping', 'waiting');
DROP INDEX runs_parent;
CREATE UNIQUE INDEX runs_children ON runs (parent_id, parent_step, child_index) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_unfinished_children ON runs (parent_id, parent_step)
    WHERE parent_id IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');

CREATE TABLE waits (
    run_id      text NOT NULL,
    step_id     text NOT NULL,
    event_name  text NOT NULL,
    match_path  text,           -- e.g. 'data.sermon_id'; NULL when only a condition (or nothing) filters
    match_value text,           -- canonical JSON of the waiting run's value at match_path
    condition   text,           -- a CEL expression over `event` (the waiting run's) and `async` (the new one)
    origin      bytea NOT NULL, -- the waiting run's event, for the condition
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
-- Equality on all three, NULLs included: an expression index that `waits_matching` can use.
CREATE INDEX waits_match ON waits (event_name, coalesce(match_path, ''), coalesce(match_value, ''));

CREATE TABLE fan_outs (
    parent_id  text NOT NULL,
    step_id    text NOT NULL,
    function   text NOT NULL,
    total      integer,                  -- NULL until every child exists (sealed)
    tolerate   double precision NOT NULL DEFAULT 0,  -- failures tolerated: a count (>= 1) or a fraction (< 1)
    created_at timestamptz NOT NULL,
    done_at    timestamptz,              -- set once, by whoever sees the last child finish: the reduce happens once
    PRIMARY KEY (parent_id, step_id)
);
