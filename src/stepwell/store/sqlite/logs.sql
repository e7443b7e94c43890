-- Observability (migration 0005): ctx.log lines, trace context, telemetry reads. Loaded by logs.py.

-- name: append_run_logs
INSERT INTO run_logs (run_id, segment, attempt, seq, at, level, step, message)
VALUES (:run_id, :segment, :attempt, :seq, :at, :level, :step, :message)
ON CONFLICT DO NOTHING;

-- name: append_run_logs_count
SELECT count(*) FROM run_logs WHERE run_id = :run_id;

-- name: append_run_logs_trim
DELETE FROM run_logs
WHERE (run_id, segment, attempt, seq) IN (
    SELECT run_id, segment, attempt, seq FROM run_logs WHERE run_id = :run_id
    ORDER BY segment, attempt, seq LIMIT :excess
);

-- name: append_run_logs_count_drops
INSERT INTO run_log_drops (run_id, dropped) VALUES (:run_id, :excess)
ON CONFLICT (run_id) DO UPDATE SET dropped = dropped + excluded.dropped;

-- name: list_run_logs
-- The newest `limit` lines (the caller puts them back in order).
SELECT segment, attempt, seq, at, level, step, message FROM run_logs WHERE run_id = :run_id
ORDER BY segment DESC, attempt DESC, seq DESC LIMIT :limit;

-- name: list_run_logs_dropped
SELECT dropped FROM run_log_drops WHERE run_id = :run_id;

-- name: resolve_run_prefix
-- A range over the primary key: ids are ASCII below '~'.
SELECT id FROM runs WHERE id >= :prefix AND id < :prefix || '~' ORDER BY id LIMIT :limit;

-- name: set_trace_context_events
UPDATE events SET traceparent = :traceparent, tracestate = :tracestate
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: set_trace_context_runs
UPDATE runs SET traceparent = :traceparent, tracestate = :tracestate, trace_link = :link
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: run_telemetry
SELECT r.id, r.available_at,
       CASE WHEN r.traceparent IS NULL THEN e.traceparent ELSE r.traceparent END,
       CASE WHEN r.traceparent IS NULL THEN e.tracestate ELSE r.tracestate END,
       r.trace_link
FROM runs r LEFT JOIN events e ON e.id = r.event_id
WHERE r.id IN (SELECT value FROM json_each(:ids));

-- name: queue_gauges
-- At most :scan entries of the ready index (runs_ready), grouped: bounded however long the queue.
SELECT function, count(*), min(available_at) FROM (
    SELECT function, available_at FROM runs
    WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL AND available_at <= :now
    ORDER BY priority DESC, available_at
    LIMIT :scan
) GROUP BY function;

-- name: function_activity_finished
SELECT function, status, count(*) FROM runs
WHERE status IN ('completed', 'failed') AND ended_at IS NOT NULL AND ended_at >= :since
GROUP BY function, status;

-- name: function_activity_dead_letters
SELECT function, count(*) FROM dead_letters WHERE redriven_at IS NULL GROUP BY function;
