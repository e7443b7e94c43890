-- The wait and fan-out machinery several verbs run (waiting.py): named after the rule step, not one verb.

-- name: wait_paths
SELECT DISTINCT match_path FROM waits WHERE event_name = :name;

-- name: waits_matching
SELECT run_id, step_id, condition, origin, kind FROM waits
WHERE event_name = :name AND match_path IS :path AND match_value IS :value
ORDER BY created_at;

-- name: delete_wait
DELETE FROM waits WHERE run_id = :run_id AND step_id = :step_id RETURNING run_id;

-- name: resolve_step
UPDATE steps SET status = :status, output = :output, error = :error, ended_at = :now
WHERE run_id = :run_id AND id = :step_id AND status = 'waiting';

-- name: wake_run
UPDATE runs SET available_at = :now, wake_requested = 1
WHERE id = :run_id AND status IN ('waiting', 'running');

-- name: lease_held
SELECT 1 FROM runs WHERE id = :run_id AND lease_token = :token AND status = 'running';

-- name: create_children
INSERT INTO runs (id, function, event_id, input, input_name, parent_id, parent_step, child_index, on_failure,
                  status, attempt, max_attempts, priority, available_at, created_at, flow)
VALUES (:id, :function, NULL, :input, :input_name, :parent_id, :parent_step, :child_index, :on_failure,
        'queued', 1, :max_attempts, :priority, :now, :now, 128)
ON CONFLICT DO NOTHING;

-- name: child_link
SELECT parent_id, parent_step, child_index, status, output, error FROM runs WHERE id = :id;

-- name: invoked_child
SELECT id FROM runs WHERE parent_id = :parent_id AND parent_step = :step_id AND child_index IS NULL;

-- name: fan_out_finished
UPDATE fan_outs SET done_at = :now
WHERE parent_id = :parent_id AND step_id = :step_id AND total IS NOT NULL AND done_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM runs
      WHERE parent_id = :parent_id AND parent_step = :step_id
        AND status NOT IN ('completed', 'failed', 'cancelled')
  );

-- name: fan_out_counts_total
SELECT total, done_at FROM fan_outs WHERE parent_id = :parent_id AND step_id = :step_id;

-- name: fan_out_counts
SELECT status, count(*) FROM runs WHERE parent_id = :parent_id AND parent_step = :step_id GROUP BY status;
