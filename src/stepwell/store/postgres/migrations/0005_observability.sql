-- Version 5: observability. Lines that user code logged through ctx.log, stored with their run,
-- and the W3C trace context of events and runs (the producer's span, carried to every attempt).
-- Same tables and columns as SQLite's 0005.

CREATE TABLE run_logs (
    run_id  text NOT NULL,
    segment integer NOT NULL,   -- steps called before the line: replayed code logs at the same place
    attempt integer NOT NULL,   -- 0 outside steps (the same line on every replay); else the step's attempt
    seq     integer NOT NULL,   -- order within (segment, attempt)
    at      timestamptz NOT NULL,
    level   text NOT NULL,
    step    text,
    message text NOT NULL,
    PRIMARY KEY (run_id, segment, attempt, seq)  -- a replayed line has the same key: stored once
);

CREATE TABLE run_log_drops (
    run_id  text PRIMARY KEY,
    dropped integer NOT NULL    -- oldest lines dropped past the per-run bound
);

-- Retention deletes runs; their lines go with them (no change to the purge statements).
CREATE FUNCTION stepwell_purge_run_logs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM run_logs WHERE run_id = OLD.id;
    DELETE FROM run_log_drops WHERE run_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER runs_purge_logs AFTER DELETE ON runs FOR EACH ROW EXECUTE FUNCTION stepwell_purge_run_logs();

ALTER TABLE events ADD COLUMN traceparent text;
ALTER TABLE events ADD COLUMN tracestate text;
ALTER TABLE runs ADD COLUMN traceparent text;  -- NULL: the run's event's context applies
ALTER TABLE runs ADD COLUMN tracestate text;
ALTER TABLE runs ADD COLUMN trace_link boolean NOT NULL DEFAULT false;  -- start a new trace linked to it
