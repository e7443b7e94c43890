-- Every statement the SQLite store runs. Parameters are named; nothing is built from strings.

-- name: append_events_known
SELECT id FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: append_events
-- Numbered parameters, bound from tuples: a bulk send binds a row per event, and binding by
-- name looks up every name in a dict per row (a third of the cost of a bare insert).
INSERT INTO events (id, name, data, ts, received_at, disposition, traceparent, tracestate)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8);

-- name: fire_cron_tick_event
INSERT INTO events (id, name, data, ts, received_at, disposition)
VALUES (:id, :name, :data, :ts, :now, :disposition)
ON CONFLICT (id) DO NOTHING;

-- name: get_event_runs
SELECT id FROM runs WHERE event_id = :event_id ORDER BY id;

-- name: create_runs
-- Numbered parameters, bound from tuples, as in append_events (?11: now).
INSERT INTO runs (id, function, event_id, input, input_name, parent_id, replay_of, on_failure,
                  status, attempt, max_attempts, priority, available_at, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', 1, ?9, ?10, ?11, ?11);

-- name: settle_runs_event
SELECT name, data, ts FROM events WHERE id = :id;

-- name: get_run_steps
SELECT id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position
FROM steps WHERE run_id = :run_id ORDER BY position;

-- name: extend_leases
UPDATE runs SET lease_expires_at = :expires_at
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING lease_expires_at;

-- name: record_step
INSERT INTO steps (run_id, id, position, kind, status, attempts, output, error, wake_at, started_at, ended_at)
SELECT :run_id, :id, :position, :kind, :status, 1, :output, :error, :wake_at, coalesce(:started_at, :now), :ended_at
WHERE EXISTS (SELECT 1 FROM runs WHERE id = :run_id AND lease_token = :token AND status = 'running')
ON CONFLICT (run_id, id) DO UPDATE
SET status = excluded.status, output = excluded.output, error = excluded.error,
    ended_at = excluded.ended_at,
    attempts = steps.attempts + (CASE WHEN steps.status = 'errored' THEN 1 ELSE 0 END)
RETURNING attempts, started_at;

-- name: settle_runs_complete
UPDATE runs
SET status = 'completed', output = :output, error = NULL, ended_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING flow;

-- name: settle_runs_retry
UPDATE runs
SET status = 'queued', attempt = attempt + 1, available_at = :available_at, error = :error,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING attempt - 1 AS failed_attempt, flow;

-- name: settle_runs_suspend
UPDATE runs
SET status = :status, available_at = CASE WHEN wake_requested = 1 THEN :now ELSE :until END, wake_requested = 0,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING flow;

-- name: settle_runs_fail
UPDATE runs
SET status = 'failed', error = :error, ended_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING function, attempt, on_failure, event_id, input, input_name, flow;

-- name: settle_runs_error
INSERT INTO run_errors (run_id, seq, attempt, error, at)
VALUES (:run_id, (SELECT coalesce(max(seq), 0) + 1 FROM run_errors WHERE run_id = :run_id), :attempt, :error, :now);

-- name: settle_runs_dead_letter
INSERT INTO dead_letters (run_id, function, error, reason, attempts, failed_at)
VALUES (:run_id, :function, :error, :reason, :attempts, :now)
ON CONFLICT (run_id) DO UPDATE
SET error = excluded.error, reason = excluded.reason, attempts = excluded.attempts,
    failed_at = excluded.failed_at, redriven_at = NULL;

-- name: release_runs
UPDATE runs
SET status = 'queued', available_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING flow;

-- name: rescue_expired_leases_find
SELECT id, lease_token, attempt, max_attempts FROM runs
WHERE status = 'running' AND lease_expires_at < :now
ORDER BY lease_expires_at LIMIT :limit;

-- name: rescue_expired_leases_requeue
UPDATE runs
SET status = 'queued', attempt = attempt + 1, available_at = :now, error = :error,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING flow;

-- name: cancel_runs
UPDATE runs
SET status = 'cancelled', ended_at = :now, hold = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND status IN ('queued', 'running', 'sleeping', 'waiting')
RETURNING id, flow;

-- name: redrive_by_id
SELECT run_id FROM dead_letters WHERE run_id = :run_id AND redriven_at IS NULL;

-- name: redrive_by_filter
SELECT run_id FROM dead_letters
WHERE redriven_at IS NULL
  AND (:function IS NULL OR function = :function)
  AND (:since IS NULL OR failed_at >= :since)
ORDER BY failed_at LIMIT :limit;

-- name: redrive_mark
UPDATE dead_letters SET redriven_at = :now, redrive_count = redrive_count + 1
WHERE run_id = :run_id AND redriven_at IS NULL;

-- name: redrive
UPDATE runs
SET status = 'queued', attempt = 1, available_at = :now, error = NULL, ended_at = NULL, deadline_at = NULL
WHERE id = :run_id AND status = 'failed'
RETURNING flow;

-- name: redrive_forget_steps
DELETE FROM steps WHERE run_id = :run_id AND status IN ('failed', 'errored');

-- name: get_run
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs WHERE id = :id;

-- name: get_run_errors
SELECT error FROM run_errors WHERE run_id = :run_id ORDER BY seq;

-- name: get_run_input
SELECT coalesce(e.name, r.input_name), coalesce(e.data, r.input)
FROM runs r LEFT JOIN events e ON e.id = r.event_id
WHERE r.id = :id;

-- name: get_event
SELECT id, name, data, ts, received_at, disposition FROM events WHERE id = :id;

-- name: list_dead_letters
SELECT run_id, function, error, reason, failed_at, attempts, redrive_count, ordering_key, key_policy
FROM dead_letters
WHERE redriven_at IS NULL AND (:function IS NULL OR function = :function)
ORDER BY failed_at LIMIT :limit;

-- name: purge_runs
DELETE FROM runs WHERE id IN (
    SELECT id FROM runs
    WHERE (status IN ('completed', 'cancelled') AND ended_at < :completed_before)
       OR (status = 'failed' AND ended_at < :failed_before)
    LIMIT :batch
)
RETURNING id;

-- name: purge_steps
DELETE FROM steps WHERE run_id = :run_id;

-- name: purge_run_errors
DELETE FROM run_errors WHERE run_id = :run_id;

-- name: purge_dead_letter
DELETE FROM dead_letters WHERE run_id = :run_id;

-- name: purge_events
DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e
    WHERE e.received_at < :before
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id)
    LIMIT :batch
);

-- name: queue_stats
SELECT
    (SELECT count(*) FROM runs WHERE status IN ('queued', 'sleeping', 'waiting') AND available_at <= :now),
    (SELECT count(*) FROM runs WHERE status IN ('queued', 'sleeping', 'waiting') AND available_at > :now
                                  AND available_at < :forever),
    (SELECT count(*) FROM runs WHERE status = 'running'),
    (SELECT count(*) FROM dead_letters WHERE redriven_at IS NULL),
    (SELECT min(available_at) FROM runs WHERE status IN ('queued', 'sleeping', 'waiting') AND available_at > :now
                                  AND available_at < :forever);

-- Waiting for events, child runs, fan-outs (migration 0002).

-- name: register_wait
INSERT INTO waits (run_id, step_id, event_name, match_path, match_value, condition, origin, expires_at, created_at)
VALUES (:run_id, :step_id, :event_name, :match_path, :match_value, :condition, :origin, :expires_at, :now)
ON CONFLICT DO NOTHING;

-- name: append_events_disposition
UPDATE events SET disposition = :disposition WHERE id = :id;

-- name: time_out_step_resolved
SELECT id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position
FROM steps WHERE run_id = :run_id AND id = :step_id;

-- name: open_fan_out
INSERT INTO fan_outs (parent_id, step_id, function, tolerate, created_at)
VALUES (:parent_id, :step_id, :function, :tolerate, :now)
ON CONFLICT DO NOTHING;

-- name: seal_fan_out
UPDATE fan_outs SET total = :total WHERE parent_id = :parent_id AND step_id = :step_id;

-- name: fan_out_results
SELECT child_index, id, status, output, error FROM runs
WHERE parent_id = :parent_id AND parent_step = :step_id AND child_index > :after
ORDER BY child_index LIMIT :limit;

-- name: wake_finished_fan_outs
SELECT parent_id, step_id FROM fan_outs WHERE total IS NOT NULL AND done_at IS NULL LIMIT :limit;

-- name: redrive_children
SELECT d.run_id FROM dead_letters d JOIN runs r ON r.id = d.run_id
WHERE r.parent_id = :parent_id AND d.redriven_at IS NULL;

-- name: redrive_fan_outs
UPDATE fan_outs SET done_at = NULL, total = NULL
WHERE parent_id = :run_id
  AND step_id IN (SELECT id FROM steps WHERE run_id = :run_id AND status IN ('failed', 'errored'));

-- Flow control (migration 0003).

-- name: claim_runs_any_ready
SELECT 1 FROM runs
WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL AND available_at <= :now
  AND (:functions IS NULL OR function IN (SELECT value FROM json_each(:functions)))
  AND function NOT IN (SELECT function FROM function_pauses)  -- a paused function's runs wait
LIMIT 1;

-- name: claim_runs
UPDATE runs
SET status = 'running', lease_owner = :worker_id, lease_token = :token, wake_requested = 0, note = NULL,
    lease_expires_at = :expires_at, started_at = coalesce(started_at, :now),
    deadline_at = CASE WHEN timeout_us IS NOT NULL THEN coalesce(deadline_at, :now + timeout_us) END
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, function, attempt, max_attempts, event_id, input, input_name, created_at, flow,
          available_at, traceparent, tracestate, trace_link;

-- name: claim_runs_events
SELECT id, name, data, ts, traceparent, tracestate FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: claim_runs_steps
SELECT run_id, id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position
FROM steps WHERE run_id IN (SELECT value FROM json_each(:ids)) ORDER BY run_id, position;

-- name: drain_key
SELECT id FROM runs
WHERE function = :function AND ordering_key = :key AND status = 'queued' AND started_at IS NULL;

-- name: get_event_skips
SELECT function, reason, run_id FROM event_skips WHERE event_id = :event_id ORDER BY function;

-- name: fail_overdue_runs
SELECT id, lease_token, status FROM runs
WHERE deadline_at < :now AND status IN ('queued', 'running', 'sleeping', 'waiting') LIMIT :limit;

-- name: fail_overdue_runs_fail
UPDATE runs
SET status = 'failed', error = :error, ended_at = :now, hold = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND status IN ('queued', 'running', 'sleeping', 'waiting')
RETURNING function, attempt, on_failure, event_id, input, input_name, flow;

-- The schema's bookkeeping (schema.py): which numbered migrations are applied.

-- name: migrate_create_table
CREATE TABLE IF NOT EXISTS stepwell_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at INTEGER);

-- name: migrate_record
INSERT INTO stepwell_migrations (version, name, applied_at) VALUES (?, ?, ?);

-- name: applied_migrations_table_exists
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stepwell_migrations';

-- name: applied_migrations
SELECT version FROM stepwell_migrations ORDER BY version;
