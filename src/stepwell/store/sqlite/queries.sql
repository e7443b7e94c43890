-- Every statement the SQLite store runs. Parameters are named; nothing is built from strings.

-- name: known_events
SELECT id FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: insert_event
INSERT INTO events (id, name, data, ts, received_at, disposition)
VALUES (:id, :name, :data, :ts, :now, :disposition);

-- name: insert_event_once
INSERT INTO events (id, name, data, ts, received_at, disposition)
VALUES (:id, :name, :data, :ts, :now, :disposition)
ON CONFLICT (id) DO NOTHING;

-- name: runs_of_event
SELECT id FROM runs WHERE event_id = :event_id ORDER BY id;

-- name: insert_run
INSERT INTO runs (id, function, event_id, input, input_name, parent_id, replay_of, on_failure,
                  status, attempt, max_attempts, priority, available_at, created_at)
VALUES (:id, :function, :event_id, :input, :input_name, :parent_id, :replay_of, :on_failure,
        'queued', 1, :max_attempts, :priority, :now, :now);

-- name: event_of
SELECT name, data, ts FROM events WHERE id = :id;

-- name: steps_of_run
SELECT id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position
FROM steps WHERE run_id = :run_id ORDER BY position;

-- name: extend_lease
UPDATE runs SET lease_expires_at = :expires_at
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING lease_expires_at;

-- name: upsert_step
INSERT INTO steps (run_id, id, position, kind, status, attempts, output, error, wake_at, started_at, ended_at)
SELECT :run_id, :id, :position, :kind, :status, 1, :output, :error, :wake_at, coalesce(:started_at, :now), :ended_at
WHERE EXISTS (SELECT 1 FROM runs WHERE id = :run_id AND lease_token = :token AND status = 'running')
ON CONFLICT (run_id, id) DO UPDATE
SET status = excluded.status, output = excluded.output, error = excluded.error,
    ended_at = excluded.ended_at,
    attempts = steps.attempts + (CASE WHEN steps.status = 'errored' THEN 1 ELSE 0 END)
RETURNING attempts, started_at;

-- name: complete_run
UPDATE runs
SET status = 'completed', output = :output, error = NULL, ended_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING flow;

-- name: retry_run
UPDATE runs
SET status = 'queued', attempt = attempt + 1, available_at = :available_at, error = :error,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING attempt - 1 AS failed_attempt, flow;

-- name: suspend_run
UPDATE runs
SET status = :status, available_at = CASE WHEN wake_requested = 1 THEN :now ELSE :until END, wake_requested = 0,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING flow;

-- name: fail_run
UPDATE runs
SET status = 'failed', error = :error, ended_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING function, attempt, on_failure, event_id, input, input_name, flow;

-- name: record_run_error
INSERT INTO run_errors (run_id, seq, attempt, error, at)
VALUES (:run_id, (SELECT coalesce(max(seq), 0) + 1 FROM run_errors WHERE run_id = :run_id), :attempt, :error, :now);

-- name: upsert_dead_letter
INSERT INTO dead_letters (run_id, function, error, reason, attempts, failed_at)
VALUES (:run_id, :function, :error, :reason, :attempts, :now)
ON CONFLICT (run_id) DO UPDATE
SET error = excluded.error, reason = excluded.reason, attempts = excluded.attempts,
    failed_at = excluded.failed_at, redriven_at = NULL;

-- name: release_run
UPDATE runs
SET status = 'queued', available_at = :now,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING flow;

-- name: expired_leases
SELECT id, lease_token, attempt, max_attempts FROM runs
WHERE status = 'running' AND lease_expires_at < :now
ORDER BY lease_expires_at LIMIT :limit;

-- name: requeue_expired
UPDATE runs
SET status = 'queued', attempt = attempt + 1, available_at = :now, error = :error,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND lease_token = :token AND status = 'running'
RETURNING flow;

-- name: cancel_run
UPDATE runs
SET status = 'cancelled', ended_at = :now, hold = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND status IN ('queued', 'running', 'sleeping', 'waiting')
RETURNING id, flow;

-- name: open_dead_letters_by_id
SELECT run_id FROM dead_letters WHERE run_id = :run_id AND redriven_at IS NULL;

-- name: open_dead_letters_by_filter
SELECT run_id FROM dead_letters
WHERE redriven_at IS NULL
  AND (:function IS NULL OR function = :function)
  AND (:since IS NULL OR failed_at >= :since)
ORDER BY failed_at LIMIT :limit;

-- name: mark_redriven
UPDATE dead_letters SET redriven_at = :now, redrive_count = redrive_count + 1
WHERE run_id = :run_id AND redriven_at IS NULL;

-- name: requeue_redriven
UPDATE runs
SET status = 'queued', attempt = 1, available_at = :now, error = NULL, ended_at = NULL, deadline_at = NULL
WHERE id = :run_id AND status = 'failed'
RETURNING flow;

-- name: forget_failed_steps
DELETE FROM steps WHERE run_id = :run_id AND status IN ('failed', 'errored');

-- name: get_run
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs WHERE id = :id;

-- name: run_errors
SELECT error FROM run_errors WHERE run_id = :run_id ORDER BY seq;

-- name: run_input
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

-- name: wait_paths
SELECT DISTINCT match_path FROM waits WHERE event_name = :name;

-- name: waits_matching
SELECT run_id, step_id, condition, origin, kind FROM waits
WHERE event_name = :name AND match_path IS :path AND match_value IS :value
ORDER BY created_at;

-- name: insert_wait
INSERT INTO waits (run_id, step_id, event_name, match_path, match_value, condition, origin, expires_at, created_at)
VALUES (:run_id, :step_id, :event_name, :match_path, :match_value, :condition, :origin, :expires_at, :now)
ON CONFLICT DO NOTHING;

-- name: delete_wait
DELETE FROM waits WHERE run_id = :run_id AND step_id = :step_id RETURNING run_id;

-- name: resolve_step
UPDATE steps SET status = :status, output = :output, error = :error, ended_at = :now
WHERE run_id = :run_id AND id = :step_id AND status = 'waiting';

-- name: wake_run
UPDATE runs SET available_at = :now, wake_requested = 1
WHERE id = :run_id AND status IN ('waiting', 'running');

-- name: set_disposition
UPDATE events SET disposition = :disposition WHERE id = :id;

-- name: lease_held
SELECT 1 FROM runs WHERE id = :run_id AND lease_token = :token AND status = 'running';

-- name: insert_child
INSERT INTO runs (id, function, event_id, input, input_name, parent_id, parent_step, child_index, on_failure,
                  status, attempt, max_attempts, priority, available_at, created_at, flow)
VALUES (:id, :function, NULL, :input, :input_name, :parent_id, :parent_step, :child_index, :on_failure,
        'queued', 1, :max_attempts, :priority, :now, :now, 128)
ON CONFLICT DO NOTHING;

-- name: child_link
SELECT parent_id, parent_step, child_index, status, output, error FROM runs WHERE id = :id;

-- name: step_of_run
SELECT id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position
FROM steps WHERE run_id = :run_id AND id = :step_id;

-- name: invoked_child
SELECT id FROM runs WHERE parent_id = :parent_id AND parent_step = :step_id AND child_index IS NULL;

-- name: insert_fan_out
INSERT INTO fan_outs (parent_id, step_id, function, tolerate, created_at)
VALUES (:parent_id, :step_id, :function, :tolerate, :now)
ON CONFLICT DO NOTHING;

-- name: seal_fan_out
UPDATE fan_outs SET total = :total WHERE parent_id = :parent_id AND step_id = :step_id;

-- name: fan_out_finished
UPDATE fan_outs SET done_at = :now
WHERE parent_id = :parent_id AND step_id = :step_id AND total IS NOT NULL AND done_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM runs
      WHERE parent_id = :parent_id AND parent_step = :step_id
        AND status NOT IN ('completed', 'failed', 'cancelled')
  );

-- name: fan_out_row
SELECT total, done_at FROM fan_outs WHERE parent_id = :parent_id AND step_id = :step_id;

-- name: fan_out_status_counts
SELECT status, count(*) FROM runs WHERE parent_id = :parent_id AND parent_step = :step_id GROUP BY status;

-- name: fan_out_page
SELECT child_index, id, status, output, error FROM runs
WHERE parent_id = :parent_id AND parent_step = :step_id AND child_index > :after
ORDER BY child_index LIMIT :limit;

-- name: unfinished_fan_outs
SELECT parent_id, step_id FROM fan_outs WHERE total IS NOT NULL AND done_at IS NULL LIMIT :limit;

-- name: open_dead_children
SELECT d.run_id FROM dead_letters d JOIN runs r ON r.id = d.run_id
WHERE r.parent_id = :parent_id AND d.redriven_at IS NULL;

-- name: reopen_failed_fan_outs
UPDATE fan_outs SET done_at = NULL, total = NULL
WHERE parent_id = :run_id
  AND step_id IN (SELECT id FROM steps WHERE run_id = :run_id AND status IN ('failed', 'errored'));

-- Flow control (migration 0003).

-- name: insert_flow_run
INSERT INTO runs (id, function, event_id, input, input_name, parent_id, replay_of, on_failure,
                  status, attempt, max_attempts, priority, available_at, created_at,
                  flow, hold, note, ordering_key, park, throttle, timeout_us)
VALUES (:id, :function, :event_id, :input, :input_name, :parent_id, :replay_of, :on_failure,
        'queued', 1, :max_attempts, :priority, :available_at, :now,
        :flow, :hold, :note, :ordering_key, :park, :throttle, :timeout_us);

-- name: any_ready
SELECT 1 FROM runs
WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL AND available_at <= :now
  AND (:functions IS NULL OR function IN (SELECT value FROM json_each(:functions)))
  AND function NOT IN (SELECT function FROM function_pauses)  -- a paused function's runs wait
LIMIT 1;

-- name: claim_candidates
-- :functions (JSON array, or NULL for all): only the runs of the functions the claiming worker serves.
SELECT id, flow, throttle, started_at IS NULL FROM runs
WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL AND available_at <= :now
  AND (:functions IS NULL OR function IN (SELECT value FROM json_each(:functions)))
  AND function NOT IN (SELECT function FROM function_pauses)  -- a paused function's runs wait
ORDER BY priority DESC, available_at
LIMIT :limit;

-- name: claim_runs
UPDATE runs
SET status = 'running', lease_owner = :worker_id, lease_token = :token, wake_requested = 0, note = NULL,
    lease_expires_at = :expires_at, started_at = coalesce(started_at, :now),
    deadline_at = CASE WHEN timeout_us IS NOT NULL THEN coalesce(deadline_at, :now + timeout_us) END
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, function, attempt, max_attempts, event_id, input, input_name, created_at, flow;

-- name: events_of
SELECT id, name, data, ts FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: steps_of_runs
SELECT run_id, id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position
FROM steps WHERE run_id IN (SELECT value FROM json_each(:ids)) ORDER BY run_id, position;

-- name: key_state
SELECT head, paused, parked FROM ordering_keys WHERE function = :function AND key = :key;

-- name: next_in_key
SELECT id FROM runs
WHERE function = :function AND ordering_key = :key AND hold IN ('ordering', 'paused')
ORDER BY rowid LIMIT 1;

-- name: drop_key
DELETE FROM ordering_keys WHERE function = :function AND key = :key AND paused = 0;

-- name: set_hold
UPDATE runs SET hold = :hold WHERE id = :run_id;

-- name: run_key
SELECT function, ordering_key, park, status FROM runs WHERE id = :run_id;

-- name: key_pending
SELECT id FROM runs
WHERE function = :function AND ordering_key = :key AND status = 'queued' AND started_at IS NULL;

-- name: insert_run_slot
INSERT INTO run_slots (run_id, scope, key, lim) VALUES (:run_id, :scope, :key, :lim);

-- name: run_slots_of
SELECT scope, key, lim FROM run_slots WHERE run_id = :run_id ORDER BY scope;

-- name: give_slot
UPDATE slots SET in_use = in_use - 1 WHERE scope = :scope AND key = :key AND in_use > 0;

-- name: slot_in_use
SELECT in_use FROM slots WHERE scope = :scope AND key = :key;

-- name: mark_slot_waiting
UPDATE run_slots SET waiting = :waiting WHERE run_id = :run_id AND scope = :scope;

-- name: next_slot_waiter
SELECT run_id FROM run_slots WHERE scope = :scope AND key = :key AND waiting = 1 ORDER BY rowid LIMIT 1;

-- name: set_slots_held
UPDATE runs SET slots_held = :held WHERE id = :run_id;

-- name: gate_tat
SELECT tat FROM gates WHERE scope = :scope AND key = :key;

-- name: set_gate_tat
INSERT INTO gates (scope, key, tat) VALUES (:scope, :key, :tat)
ON CONFLICT (scope, key) DO UPDATE SET tat = excluded.tat;

-- name: throttle_run
UPDATE runs SET available_at = :available_at, note = 'throttled' WHERE id = :run_id;

-- name: mark_debounced
-- The event a later one replaced in its pending debounced run: `debounced`, unless it still owns a run.
UPDATE events SET disposition = 'debounced'
WHERE id = :id AND disposition = 'started' AND NOT EXISTS (SELECT 1 FROM runs WHERE event_id = :id);

-- name: batch_add
INSERT INTO batch_events (run_id, seq, event_id) VALUES (:run_id, :seq, :event_id);

-- name: batch_events_of
SELECT e.id, e.name, e.data, e.ts FROM batch_events b JOIN events e ON e.id = b.event_id
WHERE b.run_id = :run_id ORDER BY b.seq;

-- name: insert_skip
INSERT INTO event_skips (event_id, function, reason, run_id) VALUES (:event_id, :function, :reason, :run_id)
ON CONFLICT DO NOTHING;

-- name: skips_of_event
SELECT function, reason, run_id FROM event_skips WHERE event_id = :event_id ORDER BY function;

-- name: insert_cancel_wait
INSERT INTO waits (run_id, step_id, event_name, match_path, match_value, condition, origin, expires_at, created_at, kind)
VALUES (:run_id, :step_id, :event_name, :match_path, :match_value, :condition, :origin, NULL, :now, 'cancel')
ON CONFLICT DO NOTHING;

-- name: forget_cancel_waits
DELETE FROM waits WHERE run_id = :run_id AND kind = 'cancel';

-- name: run_flow
SELECT flow, status, slots_held FROM runs WHERE id = :run_id;

-- name: mark_dead_letter_key
UPDATE dead_letters SET ordering_key = :key, key_policy = :policy WHERE run_id = :run_id;

-- name: overdue_runs
SELECT id, lease_token, status FROM runs
WHERE deadline_at < :now AND status IN ('queued', 'running', 'sleeping', 'waiting') LIMIT :limit;

-- name: fail_run_unleased
UPDATE runs
SET status = 'failed', error = :error, ended_at = :now, hold = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE id = :run_id AND status IN ('queued', 'running', 'sleeping', 'waiting')
RETURNING function, attempt, on_failure, event_id, input, input_name, flow;

-- name: explain_run
SELECT status, hold, note, ordering_key, available_at, attempt, function,
       EXISTS (SELECT 1 FROM function_pauses p WHERE p.function = runs.function)
FROM runs WHERE id = :run_id;

-- name: waiting_slot
SELECT s.scope, s.key, s.lim, coalesce(sl.in_use, 0) FROM run_slots s
LEFT JOIN slots sl ON sl.scope = s.scope AND sl.key = s.key
WHERE s.run_id = :run_id AND s.waiting = 1;

-- name: pending_wait
SELECT event_name, kind FROM waits WHERE run_id = :run_id AND kind = 'wait' LIMIT 1;

-- name: pause_head
UPDATE runs SET hold = 'paused' WHERE id = :run_id AND status = 'queued' AND hold IS NULL;

-- name: resume_head
UPDATE runs SET hold = NULL WHERE id = :run_id AND hold = 'paused';
