-- The dashboard's insight verbs: search by a payload field, duration percentiles, the fan-out list.

-- name: search_runs
-- `scanned` is the next %(scan_limit)s runs of the filter from the page cursor (the same filter and
-- order as list_runs); the payload test runs only on those, so one call is bounded whatever the
-- table's size. The path (text[]) and the value (jsonb) are bound parameters. Every row carries the
-- scan's edge (its oldest run) and size; a scan without a match is one row of NULL run columns.
WITH scanned AS MATERIALIZED (
    SELECT id, created_at, event_id, input FROM runs
    WHERE (%(event_id)s::text IS NULL OR event_id = %(event_id)s::text)
      AND (%(ordering_key)s::text IS NULL OR ordering_key = %(ordering_key)s::text)
      AND (%(function)s::text IS NULL OR function = %(function)s::text)
      AND (%(status)s::text IS NULL OR status = %(status)s::text)
      AND (%(parent_id)s::text IS NULL OR parent_id = %(parent_id)s::text)
      AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s::timestamptz)
      AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)
      AND (%(page_at)s::timestamptz IS NULL OR (created_at, id) < (%(page_at)s::timestamptz, %(page_id)s::text))
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
),
edge AS (
    SELECT created_at, id, (SELECT count(*) FROM scanned) AS size FROM scanned ORDER BY created_at, id LIMIT 1
),
found AS (
    SELECT s.id, s.created_at FROM scanned s LEFT JOIN events e ON e.id = s.event_id
    WHERE convert_from(coalesce(e.data, s.input), 'UTF8')::jsonb #> %(path)s::text[] = %(value)s::jsonb
    ORDER BY s.created_at DESC, s.id DESC
    LIMIT %(limit)s
)
SELECT edge.created_at, edge.id, edge.size,
       r.id, r.function, r.status, r.attempt, r.max_attempts, r.event_id, r.parent_id, r.created_at, r.started_at,
       r.ended_at, r.available_at, r.output, r.error, r.replay_of, r.ordering_key
FROM edge LEFT JOIN found f ON true LEFT JOIN runs r ON r.id = f.id
ORDER BY f.created_at DESC, f.id DESC;

-- name: function_durations
-- The newest %(limit)s endings in [since, now]: each status read newest-first through
-- runs_status_ended, then the nearest-rank percentiles (the same rule as SQLite's statement).
WITH completed AS (
    SELECT function, status, ended_at, extract(epoch FROM ended_at - coalesce(started_at, created_at)) AS took
    FROM runs
    WHERE status = 'completed' AND ended_at IS NOT NULL AND ended_at >= %(since)s AND ended_at <= %(now)s
    ORDER BY ended_at DESC LIMIT %(limit)s
),
failed AS (
    SELECT function, status, ended_at, extract(epoch FROM ended_at - coalesce(started_at, created_at)) AS took
    FROM runs
    WHERE status = 'failed' AND ended_at IS NOT NULL AND ended_at >= %(since)s AND ended_at <= %(now)s
    ORDER BY ended_at DESC LIMIT %(limit)s
),
recent AS MATERIALIZED (
    SELECT * FROM (SELECT * FROM completed UNION ALL SELECT * FROM failed) AS both_kinds
    ORDER BY ended_at DESC LIMIT %(limit)s
),
ranked AS (
    SELECT function, status, took,
           row_number() OVER (PARTITION BY function ORDER BY took) AS position,
           count(*) OVER (PARTITION BY function) AS size
    FROM recent
)
SELECT function, count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),
       min(took) FILTER (WHERE position >= 0.50 * size)::float8,
       min(took) FILTER (WHERE position >= 0.95 * size)::float8,
       (SELECT count(*) FROM recent), (SELECT min(ended_at) FROM recent)
FROM ranked
GROUP BY function
ORDER BY function;

-- name: list_fan_outs
-- Newest first through fan_outs_created (migration 0016); children counted through the partial
-- indexes of unfinished and failed children, each count stopping at %(count_limit)s.
SELECT f.parent_id, f.step_id, f.function, f.created_at, f.total, f.tolerate, f.done_at IS NOT NULL,
       (SELECT count(*) FROM (SELECT 1 FROM runs c
                              WHERE c.parent_id = f.parent_id AND c.parent_step = f.step_id
                                AND c.status NOT IN ('completed', 'failed', 'cancelled')
                              LIMIT %(count_limit)s) AS unfinished),
       (SELECT count(*) FROM (SELECT 1 FROM runs c
                              WHERE c.parent_id = f.parent_id AND c.parent_step = f.step_id AND c.status = 'failed'
                              LIMIT %(count_limit)s) AS failed)
FROM fan_outs f
WHERE %(before_at)s::timestamptz IS NULL
   OR (f.created_at, f.parent_id, f.step_id) < (%(before_at)s::timestamptz, %(before_parent)s::text, %(before_step)s::text)
ORDER BY f.created_at DESC, f.parent_id DESC, f.step_id DESC
LIMIT %(limit)s;
