-- Pages of runs, one statement per leading filter (store/sqlite/reads.py statement_for picks the most selective one).
-- `X IS NULL OR col = X` hides an index from SQLite's planner, so the leading filter is a plain
-- equality that its index serves, and the created_at range bounds the scan from the page cursor on.

-- name: list_runs_by_event
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs
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
LIMIT :limit;

-- name: list_runs_by_parent
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs
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
LIMIT :limit;

-- name: list_runs_by_key
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs
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
LIMIT :limit;

-- name: list_runs_by_function
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs
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
LIMIT :limit;

-- name: list_runs_by_status
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs
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
LIMIT :limit;

-- name: list_runs_by_newest
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs
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
LIMIT :limit;
