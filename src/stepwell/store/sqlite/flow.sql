-- Flow control: the statements with which SQLite reads the planner's snapshots and writes its
-- change-sets (store/plan/), for admission.py and flow.py. Single-row forms: SQLite runs in-process.

-- name: idempotency_state
SELECT run_id, expires_at FROM idempotency_keys WHERE function = :function AND key = :key;

-- name: debounce_state
-- The pending run of a debounce key: one that started (or ended) is not pending any more.
SELECT d.run_id, d.first_at, r.event_id FROM debounces d JOIN runs r ON r.id = d.run_id
WHERE d.function = :function AND d.key = :key AND r.status = 'queued' AND r.started_at IS NULL;

-- name: batch_state
-- The open batch of a key: its run has not started and has room.
SELECT b.run_id, b.size, b.count FROM batches b JOIN runs r ON r.id = b.run_id
WHERE b.function = :function AND b.key = :key AND r.status = 'queued' AND r.started_at IS NULL AND b.count < b.size;

-- name: save_key
INSERT INTO ordering_keys (function, key, head, paused, parked) VALUES (:function, :key, :head, :paused, :parked)
ON CONFLICT (function, key) DO UPDATE SET head = excluded.head, paused = excluded.paused, parked = excluded.parked;

-- name: save_idempotency_key
INSERT INTO idempotency_keys (function, key, run_id, expires_at) VALUES (:function, :key, :run_id, :expires_at)
ON CONFLICT (function, key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at;

-- name: save_debounce
INSERT INTO debounces (function, key, run_id, first_at) VALUES (:function, :key, :run_id, :first_at)
ON CONFLICT (function, key) DO UPDATE SET run_id = excluded.run_id, first_at = excluded.first_at;

-- name: save_batch
INSERT INTO batches (function, key, run_id, size, count) VALUES (:function, :key, :run_id, :size, :count)
ON CONFLICT (function, key) DO UPDATE SET run_id = excluded.run_id, size = excluded.size, count = excluded.count;

-- name: push_pending_run
-- A debounced run takes its newest event and a later start; a full batch starts now.
UPDATE runs SET event_id = coalesce(:event_id, event_id), available_at = :available_at,
                note = CASE WHEN :event_id IS NULL THEN NULL ELSE note END
WHERE id = :run_id;

-- name: slot_in_use
SELECT in_use FROM slots WHERE scope = :scope AND key = :key;

-- name: save_slot
INSERT INTO slots (scope, key, in_use) VALUES (:scope, :key, :in_use)
ON CONFLICT (scope, key) DO UPDATE SET in_use = excluded.in_use;

-- name: insert_flow_run
INSERT INTO runs (id, function, event_id, input, input_name, parent_id, replay_of, on_failure,
                  status, attempt, max_attempts, priority, available_at, created_at,
                  flow, hold, note, ordering_key, park, throttle, timeout_us)
VALUES (:id, :function, :event_id, :input, :input_name, :parent_id, :replay_of, :on_failure,
        'queued', 1, :max_attempts, :priority, :available_at, :now,
        :flow, :hold, :note, :ordering_key, :park, :throttle, :timeout_us);

-- name: claim_candidates
-- :functions (JSON array, or NULL for all): only the runs of the functions the claiming worker serves.
SELECT id, flow, throttle, started_at IS NULL FROM runs
WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL AND available_at <= :now
  AND (:functions IS NULL OR function IN (SELECT value FROM json_each(:functions)))
  AND function NOT IN (SELECT function FROM function_pauses)  -- a paused function's runs wait
ORDER BY priority DESC, available_at
LIMIT :limit;

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

-- name: insert_run_slot
INSERT INTO run_slots (run_id, scope, key, lim) VALUES (:run_id, :scope, :key, :lim);

-- name: run_slots_of
SELECT scope, key, lim FROM run_slots WHERE run_id = :run_id ORDER BY scope;

-- name: give_slot
UPDATE slots SET in_use = in_use - 1 WHERE scope = :scope AND key = :key AND in_use > 0;

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

-- name: get_run_explain
SELECT status, hold, note, ordering_key, available_at, attempt, function,
       EXISTS (SELECT 1 FROM function_pauses p WHERE p.function = runs.function)
FROM runs WHERE id = :run_id;
