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
