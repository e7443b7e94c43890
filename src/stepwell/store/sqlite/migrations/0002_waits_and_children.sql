-- Version 2: runs that wait for events, child runs (invoke) and fan-outs.

ALTER TABLE runs ADD COLUMN parent_step TEXT;
ALTER TABLE runs ADD COLUMN child_index INTEGER;
-- Set when something the run waits for happens while it is running; a suspension then resumes at once.
ALTER TABLE runs ADD COLUMN wake_requested INTEGER NOT NULL DEFAULT 0;

DROP INDEX runs_ready;
CREATE INDEX runs_ready ON runs (priority DESC, available_at) WHERE status IN ('queued', 'sleeping', 'waiting');
DROP INDEX runs_parent;
CREATE UNIQUE INDEX runs_children ON runs (parent_id, parent_step, child_index) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_unfinished_children ON runs (parent_id, parent_step)
    WHERE parent_id IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');

CREATE TABLE waits (
    run_id      TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    event_name  TEXT NOT NULL,
    match_path  TEXT,           -- e.g. 'data.sermon_id'; NULL when only a condition (or nothing) filters
    match_value TEXT,           -- canonical JSON of the waiting run's value at match_path
    condition   TEXT,           -- a CEL expression over `event` (the waiting run's) and `async` (the new one)
    origin      BLOB NOT NULL,  -- the waiting run's event, for the condition
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;
CREATE INDEX waits_match ON waits (event_name, match_path, match_value);

CREATE TABLE fan_outs (
    parent_id  TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    function   TEXT NOT NULL,
    total      INTEGER,         -- NULL until every child exists (sealed)
    tolerate   REAL NOT NULL DEFAULT 0,  -- failures tolerated: a count (>= 1) or a fraction (< 1)
    created_at INTEGER NOT NULL,
    done_at    INTEGER,            -- set once, by whoever sees the last child finish: the reduce happens once
    PRIMARY KEY (parent_id, step_id)
) WITHOUT ROWID;
