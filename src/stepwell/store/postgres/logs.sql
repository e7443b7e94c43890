-- Observability (migration 0005): ctx.log lines, trace context, telemetry reads. Loaded by logs.py.

-- name: append_run_logs
-- Many lines as parallel arrays; a line already stored under its key (a replay) is skipped.
INSERT INTO run_logs (run_id, segment, attempt, seq, at, level, step, message)
SELECT * FROM unnest(%(run_ids)s::text[], %(segments)s::integer[], %(attempts)s::integer[], %(seqs)s::integer[],
                     %(ats)s::timestamptz[], %(levels)s::text[], %(steps)s::text[], %(messages)s::text[])
ON CONFLICT DO NOTHING;

-- name: append_run_logs_trim
-- Past :max_lines per run, drop the oldest lines and count them; returns nothing to read.
WITH counted AS (
    SELECT run_id, count(*) - %(max_lines)s AS excess FROM run_logs
    WHERE run_id = ANY(%(run_ids)s::text[]) GROUP BY run_id HAVING count(*) > %(max_lines)s
),
doomed AS (
    SELECT l.run_id, l.segment, l.attempt, l.seq FROM counted c
    CROSS JOIN LATERAL (
        SELECT run_id, segment, attempt, seq FROM run_logs WHERE run_id = c.run_id
        ORDER BY segment, attempt, seq LIMIT c.excess
    ) l
),
deleted AS (
    DELETE FROM run_logs r USING doomed d
    WHERE (r.run_id, r.segment, r.attempt, r.seq) = (d.run_id, d.segment, d.attempt, d.seq)
)
INSERT INTO run_log_drops (run_id, dropped) SELECT run_id, excess FROM counted
ON CONFLICT (run_id) DO UPDATE SET dropped = run_log_drops.dropped + excluded.dropped;

-- name: list_run_logs
-- The newest `limit` lines (the caller puts them back in order), and the dropped count.
SELECT segment, attempt, seq, at, level, step, message,
       (SELECT dropped FROM run_log_drops WHERE run_id = %(run_id)s)
FROM run_logs WHERE run_id = %(run_id)s
ORDER BY segment DESC, attempt DESC, seq DESC LIMIT %(limit)s;

-- name: list_run_logs_dropped
SELECT dropped FROM run_log_drops WHERE run_id = %(run_id)s;

-- name: resolve_run_prefix
-- A range over the primary key: ids are ASCII below '~'.
SELECT id FROM runs WHERE id >= %(prefix)s AND id < %(prefix)s || '~' ORDER BY id LIMIT %(limit)s;

-- name: set_trace_context
WITH events_done AS (
    UPDATE events SET traceparent = %(traceparent)s, tracestate = %(tracestate)s
    WHERE id = ANY(%(event_ids)s::text[])
)
UPDATE runs SET traceparent = %(traceparent)s, tracestate = %(tracestate)s, trace_link = %(link)s
WHERE id = ANY(%(run_ids)s::text[]);

-- name: run_telemetry
SELECT r.id, r.available_at,
       CASE WHEN r.traceparent IS NULL THEN e.traceparent ELSE r.traceparent END,
       CASE WHEN r.traceparent IS NULL THEN e.tracestate ELSE r.tracestate END,
       r.trace_link
FROM runs r LEFT JOIN events e ON e.id = r.event_id
WHERE r.id = ANY(%(ids)s::text[]);

-- name: queue_gauges
-- At most %(scan)s entries of the ready index (runs_ready), grouped: bounded however long the queue
-- (tests/test_observe_gauges.py checks the plan).
SELECT function, count(*), min(available_at) FROM (
    SELECT function, available_at FROM runs
    WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL
      AND available_at <= coalesce(%(now)s::timestamptz, now())
    ORDER BY priority DESC, available_at, seq
    LIMIT %(scan)s
) window_ GROUP BY function;

-- name: function_activity_finished
SELECT function, status, count(*) FROM runs
WHERE status IN ('completed', 'failed') AND ended_at IS NOT NULL AND ended_at >= %(since)s
GROUP BY function, status;

-- name: function_activity_dead_letters
SELECT function, count(*) FROM dead_letters WHERE redriven_at IS NULL GROUP BY function;
