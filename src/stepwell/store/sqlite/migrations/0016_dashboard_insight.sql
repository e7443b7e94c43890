-- Version 16: the dashboard's fan-out list (newest first) and its failed-children count.
CREATE INDEX fan_outs_created ON fan_outs (created_at, parent_id, step_id);
CREATE INDEX runs_failed_children ON runs (parent_id, parent_step) WHERE parent_id IS NOT NULL AND status = 'failed';
-- The endings index also holds what the functions page reads of each ending (function, duration),
-- so recent_endings and function_durations read the index alone, never the runs' rows.
DROP INDEX runs_status_ended;
CREATE INDEX runs_status_ended ON runs (status, ended_at, function, started_at, created_at) WHERE ended_at IS NOT NULL;
