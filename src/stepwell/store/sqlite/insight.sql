-- The dashboard's insight verbs: search by a payload field, duration percentiles, the fan-out list.

-- Payload search, one statement per leading filter (as in browse.sql, store/sqlite/insight.py picks it).
-- `scanned` is the next :scan_limit runs of the filter from the page cursor, read through the
-- filter's index; the payload test runs only on those, so one call is bounded whatever the table's
-- size. The path and the value are bound parameters; json_type tells a string "42" from a number 42.
-- Every row carries the scan's edge (its oldest run) and size; a scan without a match is one row of
-- NULL run columns.

-- name: search_runs_by_event
WITH scanned AS MATERIALIZED (
    SELECT id, created_at, event_id, input FROM runs
    WHERE event_id = :event_id
      AND (:event_id IS NULL OR event_id = :event_id)
      AND (:ordering_key IS NULL OR ordering_key = :ordering_key)
      AND (:function IS NULL OR function = :function)
      AND (:status IS NULL OR status = :status)
      AND (:parent_id IS NULL OR parent_id = :parent_id)
      AND created_at >= coalesce(:created_after, -9223372036854775807)
      AND created_at < coalesce(:created_before, 9223372036854775807)
      AND created_at <= coalesce(:page_at, 9223372036854775807)
      AND (:page_at IS NULL OR created_at < :page_at OR id < :page_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
),
edge AS (
    SELECT created_at, id, (SELECT count(*) FROM scanned) AS size FROM scanned ORDER BY created_at, id LIMIT 1
),
docs AS (
    SELECT s.id, s.created_at, CAST(coalesce(e.data, s.input) AS TEXT) AS doc
    FROM scanned s LEFT JOIN events e ON e.id = s.event_id
),
found AS (
    SELECT id, created_at FROM docs
    WHERE CASE :kind
        WHEN 'text' THEN json_type(doc, :path) = 'text' AND json_extract(doc, :path) = :value
        WHEN 'number' THEN json_type(doc, :path) IN ('integer', 'real') AND json_extract(doc, :path) = :value
        ELSE json_type(doc, :path) = :kind
    END
    ORDER BY created_at DESC, id DESC
    LIMIT :limit
)
SELECT edge.created_at, edge.id, edge.size,
       r.id, r.function, r.status, r.attempt, r.max_attempts, r.event_id, r.parent_id, r.created_at, r.started_at,
       r.ended_at, r.available_at, r.output, r.error, r.replay_of, r.ordering_key
FROM edge LEFT JOIN found f ON 1 = 1 LEFT JOIN runs r ON r.id = f.id
ORDER BY f.created_at DESC, f.id DESC;

-- name: search_runs_by_parent
WITH scanned AS MATERIALIZED (
    SELECT id, created_at, event_id, input FROM runs
    WHERE parent_id = :parent_id
      AND (:event_id IS NULL OR event_id = :event_id)
      AND (:ordering_key IS NULL OR ordering_key = :ordering_key)
      AND (:function IS NULL OR function = :function)
      AND (:status IS NULL OR status = :status)
      AND (:parent_id IS NULL OR parent_id = :parent_id)
      AND created_at >= coalesce(:created_after, -9223372036854775807)
      AND created_at < coalesce(:created_before, 9223372036854775807)
      AND created_at <= coalesce(:page_at, 9223372036854775807)
      AND (:page_at IS NULL OR created_at < :page_at OR id < :page_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
),
edge AS (
    SELECT created_at, id, (SELECT count(*) FROM scanned) AS size FROM scanned ORDER BY created_at, id LIMIT 1
),
docs AS (
    SELECT s.id, s.created_at, CAST(coalesce(e.data, s.input) AS TEXT) AS doc
    FROM scanned s LEFT JOIN events e ON e.id = s.event_id
),
found AS (
    SELECT id, created_at FROM docs
    WHERE CASE :kind
        WHEN 'text' THEN json_type(doc, :path) = 'text' AND json_extract(doc, :path) = :value
        WHEN 'number' THEN json_type(doc, :path) IN ('integer', 'real') AND json_extract(doc, :path) = :value
        ELSE json_type(doc, :path) = :kind
    END
    ORDER BY created_at DESC, id DESC
    LIMIT :limit
)
SELECT edge.created_at, edge.id, edge.size,
       r.id, r.function, r.status, r.attempt, r.max_attempts, r.event_id, r.parent_id, r.created_at, r.started_at,
       r.ended_at, r.available_at, r.output, r.error, r.replay_of, r.ordering_key
FROM edge LEFT JOIN found f ON 1 = 1 LEFT JOIN runs r ON r.id = f.id
ORDER BY f.created_at DESC, f.id DESC;

-- name: search_runs_by_key
WITH scanned AS MATERIALIZED (
    SELECT id, created_at, event_id, input FROM runs
    WHERE ordering_key = :ordering_key
      AND (:event_id IS NULL OR event_id = :event_id)
      AND (:ordering_key IS NULL OR ordering_key = :ordering_key)
      AND (:function IS NULL OR function = :function)
      AND (:status IS NULL OR status = :status)
      AND (:parent_id IS NULL OR parent_id = :parent_id)
      AND created_at >= coalesce(:created_after, -9223372036854775807)
      AND created_at < coalesce(:created_before, 9223372036854775807)
      AND created_at <= coalesce(:page_at, 9223372036854775807)
      AND (:page_at IS NULL OR created_at < :page_at OR id < :page_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
),
edge AS (
    SELECT created_at, id, (SELECT count(*) FROM scanned) AS size FROM scanned ORDER BY created_at, id LIMIT 1
),
docs AS (
    SELECT s.id, s.created_at, CAST(coalesce(e.data, s.input) AS TEXT) AS doc
    FROM scanned s LEFT JOIN events e ON e.id = s.event_id
),
found AS (
    SELECT id, created_at FROM docs
    WHERE CASE :kind
        WHEN 'text' THEN json_type(doc, :path) = 'text' AND json_extract(doc, :path) = :value
        WHEN 'number' THEN json_type(doc, :path) IN ('integer', 'real') AND json_extract(doc, :path) = :value
        ELSE json_type(doc, :path) = :kind
    END
    ORDER BY created_at DESC, id DESC
    LIMIT :limit
)
SELECT edge.created_at, edge.id, edge.size,
       r.id, r.function, r.status, r.attempt, r.max_attempts, r.event_id, r.parent_id, r.created_at, r.started_at,
       r.ended_at, r.available_at, r.output, r.error, r.replay_of, r.ordering_key
FROM edge LEFT JOIN found f ON 1 = 1 LEFT JOIN runs r ON r.id = f.id
ORDER BY f.created_at DESC, f.id DESC;

-- name: search_runs_by_function
WITH scanned AS MATERIALIZED (
    SELECT id, created_at, event_id, input FROM runs
    WHERE function = :function
      AND (:event_id IS NULL OR event_id = :event_id)
      AND (:ordering_key IS NULL OR ordering_key = :ordering_key)
      AND (:function IS NULL OR function = :function)
      AND (:status IS NULL OR status = :status)
      AND (:parent_id IS NULL OR parent_id = :parent_id)
      AND created_at >= coalesce(:created_after, -9223372036854775807)
      AND created_at < coalesce(:created_before, 9223372036854775807)
      AND created_at <= coalesce(:page_at, 9223372036854775807)
      AND (:page_at IS NULL OR created_at < :page_at OR id < :page_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
),
edge AS (
    SELECT created_at, id, (SELECT count(*) FROM scanned) AS size FROM scanned ORDER BY created_at, id LIMIT 1
),
docs AS (
    SELECT s.id, s.created_at, CAST(coalesce(e.data, s.input) AS TEXT) AS doc
    FROM scanned s LEFT JOIN events e ON e.id = s.event_id
),
found AS (
    SELECT id, created_at FROM docs
    WHERE CASE :kind
        WHEN 'text' THEN json_type(doc, :path) = 'text' AND json_extract(doc, :path) = :value
        WHEN 'number' THEN json_type(doc, :path) IN ('integer', 'real') AND json_extract(doc, :path) = :value
        ELSE json_type(doc, :path) = :kind
    END
    ORDER BY created_at DESC, id DESC
    LIMIT :limit
)
SELECT edge.created_at, edge.id, edge.size,
       r.id, r.function, r.status, r.attempt, r.max_attempts, r.event_id, r.parent_id, r.created_at, r.started_at,
       r.ended_at, r.available_at, r.output, r.error, r.replay_of, r.ordering_key
FROM edge LEFT JOIN found f ON 1 = 1 LEFT JOIN runs r ON r.id = f.id
ORDER BY f.created_at DESC, f.id DESC;

-- name: search_runs_by_status
WITH scanned AS MATERIALIZED (
    SELECT id, created_at, event_id, input FROM runs
    WHERE status = :status
      AND (:event_id IS NULL OR event_id = :event_id)
      AND (:ordering_key IS NULL OR ordering_key = :ordering_key)
      AND (:function IS NULL OR function = :function)
      AND (:status IS NULL OR status = :status)
      AND (:parent_id IS NULL OR parent_id = :parent_id)
      AND created_at >= coalesce(:created_after, -9223372036854775807)
      AND created_at < coalesce(:created_before, 9223372036854775807)
      AND created_at <= coalesce(:page_at, 9223372036854775807)
      AND (:page_at IS NULL OR created_at < :page_at OR id < :page_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
),
edge AS (
    SELECT created_at, id, (SELECT count(*) FROM scanned) AS size FROM scanned ORDER BY created_at, id LIMIT 1
),
docs AS (
    SELECT s.id, s.created_at, CAST(coalesce(e.data, s.input) AS TEXT) AS doc
    FROM scanned s LEFT JOIN events e ON e.id = s.event_id
),
found AS (
    SELECT id, created_at FROM docs
    WHERE CASE :kind
        WHEN 'text' THEN json_type(doc, :path) = 'text' AND json_extract(doc, :path) = :value
        WHEN 'number' THEN json_type(doc, :path) IN ('integer', 'real') AND json_extract(doc, :path) = :value
        ELSE json_type(doc, :path) = :kind
    END
    ORDER BY created_at DESC, id DESC
    LIMIT :limit
)
SELECT edge.created_at, edge.id, edge.size,
       r.id, r.function, r.status, r.attempt, r.max_attempts, r.event_id, r.parent_id, r.created_at, r.started_at,
       r.ended_at, r.available_at, r.output, r.error, r.replay_of, r.ordering_key
FROM edge LEFT JOIN found f ON 1 = 1 LEFT JOIN runs r ON r.id = f.id
ORDER BY f.created_at DESC, f.id DESC;

-- name: search_runs_by_newest
WITH scanned AS MATERIALIZED (
    SELECT id, created_at, event_id, input FROM runs
    WHERE 1 = 1
      AND (:event_id IS NULL OR event_id = :event_id)
      AND (:ordering_key IS NULL OR ordering_key = :ordering_key)
      AND (:function IS NULL OR function = :function)
      AND (:status IS NULL OR status = :status)
      AND (:parent_id IS NULL OR parent_id = :parent_id)
      AND created_at >= coalesce(:created_after, -9223372036854775807)
      AND created_at < coalesce(:created_before, 9223372036854775807)
      AND created_at <= coalesce(:page_at, 9223372036854775807)
      AND (:page_at IS NULL OR created_at < :page_at OR id < :page_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
),
edge AS (
    SELECT created_at, id, (SELECT count(*) FROM scanned) AS size FROM scanned ORDER BY created_at, id LIMIT 1
),
docs AS (
    SELECT s.id, s.created_at, CAST(coalesce(e.data, s.input) AS TEXT) AS doc
    FROM scanned s LEFT JOIN events e ON e.id = s.event_id
),
found AS (
    SELECT id, created_at FROM docs
    WHERE CASE :kind
        WHEN 'text' THEN json_type(doc, :path) = 'text' AND json_extract(doc, :path) = :value
        WHEN 'number' THEN json_type(doc, :path) IN ('integer', 'real') AND json_extract(doc, :path) = :value
        ELSE json_type(doc, :path) = :kind
    END
    ORDER BY created_at DESC, id DESC
    LIMIT :limit
)
SELECT edge.created_at, edge.id, edge.size,
       r.id, r.function, r.status, r.attempt, r.max_attempts, r.event_id, r.parent_id, r.created_at, r.started_at,
       r.ended_at, r.available_at, r.output, r.error, r.replay_of, r.ordering_key
FROM edge LEFT JOIN found f ON 1 = 1 LEFT JOIN runs r ON r.id = f.id
ORDER BY f.created_at DESC, f.id DESC;

-- name: function_durations
-- The newest :limit endings in [since, now]: each status read newest-first through runs_status_ended,
-- then the nearest-rank percentiles (the smallest duration whose rank reaches p of the count).
WITH completed AS (
    SELECT function, status, ended_at, ended_at - coalesce(started_at, created_at) AS took FROM runs
    WHERE status = 'completed' AND ended_at IS NOT NULL AND ended_at >= :since AND ended_at <= :now
    ORDER BY ended_at DESC LIMIT :limit
),
failed AS (
    SELECT function, status, ended_at, ended_at - coalesce(started_at, created_at) AS took FROM runs
    WHERE status = 'failed' AND ended_at IS NOT NULL AND ended_at >= :since AND ended_at <= :now
    ORDER BY ended_at DESC LIMIT :limit
),
recent AS MATERIALIZED (
    SELECT * FROM (SELECT * FROM completed UNION ALL SELECT * FROM failed) ORDER BY ended_at DESC LIMIT :limit
),
ranked AS (
    SELECT function, status, took,
           row_number() OVER (PARTITION BY function ORDER BY took) AS position,
           count(*) OVER (PARTITION BY function) AS size
    FROM recent
)
SELECT function, sum(status = 'completed'), sum(status = 'failed'),
       min(CASE WHEN position >= 0.50 * size THEN took END),
       min(CASE WHEN position >= 0.95 * size THEN took END),
       (SELECT count(*) FROM recent), (SELECT min(ended_at) FROM recent)
FROM ranked
GROUP BY function
ORDER BY function;

-- name: list_fan_outs
-- Newest first through fan_outs_created (migration 0016); children counted through the partial
-- indexes of unfinished and failed children, each count stopping at :count_limit.
SELECT f.parent_id, f.step_id, f.function, f.created_at, f.total, f.tolerate, f.done_at IS NOT NULL,
       (SELECT count(*) FROM (SELECT 1 FROM runs c
                              WHERE c.parent_id = f.parent_id AND c.parent_step = f.step_id
                                AND c.status NOT IN ('completed', 'failed', 'cancelled')
                              LIMIT :count_limit)),
       (SELECT count(*) FROM (SELECT 1 FROM runs c
                              WHERE c.parent_id = f.parent_id AND c.parent_step = f.step_id AND c.status = 'failed'
                              LIMIT :count_limit))
FROM fan_outs f
WHERE f.created_at <= coalesce(:before_at, 9223372036854775807)
  AND (:before_at IS NULL OR f.created_at < :before_at OR f.parent_id < :before_parent
       OR (f.parent_id = :before_parent AND f.step_id < :before_step))
ORDER BY f.created_at DESC, f.parent_id DESC, f.step_id DESC
LIMIT :limit;
