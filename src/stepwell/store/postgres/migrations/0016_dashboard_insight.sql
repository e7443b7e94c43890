-- Version 16: the dashboard's fan-out list (newest first) and its failed-children count.
CREATE INDEX fan_outs_created ON fan_outs (created_at, parent_id, step_id);
CREATE INDEX runs_failed_children ON runs (parent_id, parent_step) WHERE parent_id IS NOT NULL AND status = 'failed';
