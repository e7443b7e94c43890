-- Version 5: observability. Lines that user code logged through ctx.log, stored with their run,
-- and the W3C trace context of events and runs (the producer's span, carried to every attempt).

CREATE TABLE run_logs (
    run_id  TEXT NOT NULL,
    segment INTEGER NOT NULL,   -- steps called before the line: replayed code logs at the same place
    attempt INTEGER NOT NULL,   -- 0 outside steps (the same line on every replay); else the step's attempt
    seq     INTEGER NOT NULL,   -- order within (segment, attempt)
    at      INTEGER NOT NULL,
    level   TEXT NOT NULL,
    step    TEXT,
    message TEXT NOT NULL,
    PRIMARY KEY (run_id, segment, attempt, seq)  -- a replayed line has the same key: stored once
) WITHOUT ROWID;

CREATE TABLE run_log_drops (
    run_id  TEXT PRIMARY KEY,
    dropped INTEGER NOT NULL    -- oldest lines dropped past the per-run bound
) WITHOUT ROWID;

-- Retention deletes runs; their lines go with them (no change to the purge statements).
CREATE TRIGGER runs_purge_logs AFTER DELETE ON runs
BEGIN
    DELETE FROM run_logs WHERE run_id = old.id;
    DELETE FROM run_log_drops WHERE run_id = old.id;
END;

ALTER TABLE events ADD COLUMN traceparent TEXT;
ALTER TABLE events ADD COLUMN tracestate TEXT;
ALTER TABLE runs ADD COLUMN traceparent TEXT;  -- NULL: the run's event's context applies
ALTER TABLE runs ADD COLUMN tracestate TEXT;
ALTER TABLE runs ADD COLUMN trace_link INTEGER NOT NULL DEFAULT 0;  -- 1: start a new trace linked to it
