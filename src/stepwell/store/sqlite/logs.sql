-- Observability (migration 0005): ctx.log lines, trace context, telemetry reads. Loaded by logs.py.

-- name: insert_run_log
INSERT INTO run_logs (run_id, segment, attempt, seq, at, level, step, message)
VALUES (:run_id, :segment, :attempt, :seq, :at, :level, :step, :message)
ON CONFLICT DO NOTHING;

-- name: count_run_logs
SELECT count(*) FROM run_logs WHERE run_id = :run_id;

-- name: drop_oldest_run_logs
DELETE FROM run_logs
WHERE (run_id, segment, attempt, seq) IN (
    SELECT run_id, segment, attempt, seq FROM run_logs WHERE run_id = :run_id
    ORDER BY segment, attempt, seq LIMIT :excess
);

-- name: count_run_log_drops
INSERT INTO run_log_drops (run_id, dropped) VALUES (:run_id, :excess)
ON CONFLICT (run_id) DO UPDATE SET dropped = dropped + excluded.dropped;

-- name: run_logs
-- The newest `limit` lines (the caller puts them back in order).
SELECT segment, attempt, seq, at, level, step, message FROM run_logs WHERE run_id = :run_id
ORDER BY segment DESC, attempt DESC, seq DESC LIMIT :limit;

-- name: run_log_dropped
SELECT dropped FROM run_log_drops WHERE run_id = :run_id;

-- name: runs_with_prefix
-- A range over the primary key: ids are ASCII below '~'.
SELECT id FROM runs WHERE id >= :prefix AND id < :prefix || '~' ORDER BY id LIMIT :limit;

-- name: set_event_trace
UPDATE events SET traceparent = :traceparent, tracestate = :tracestate
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: set_run_trace
UPDATE runs SET traceparent = :traceparent, tracestate = :tracestate, trace_link = :link
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: run_telemetry
SELECT r.id, r.available_at,
       CASE WHEN r.traceparent IS NULL THEN e.traceparent ELSE r.traceparent END,
       CASE WHEN r.traceparent IS NULL THEN e.tracestate ELSE r.tracestate END,
       r.trace_link
FROM runs r LEFT JOIN events e ON e.id = r.event_id
WHERE r.id IN (SELECT value FROM json_each(:ids));

-- name: queue_window
-- At most :scan entries of the ready index (runs_ready), grouped: bounded however long the queue.
SELECT function, count(*), min(available_at) FROM (
    SELECT function, available_at FROM runs
    WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL AND available_at <= :now
    ORDER BY priority DESC, available_at
    LIMIT :scan
) GROUP BY function;

-- name: finished_since
SELECT function, status, count(*) FROM runs
WHERE status IN ('completed', 'failed') AND ended_at IS NOT NULL AND ended_at >= :since
GROUP BY function, status;

-- name: open_dead_letters
SELECT function, count(*) FROM dead_letters WHERE redriven_at IS NULL GROUP BY function;
