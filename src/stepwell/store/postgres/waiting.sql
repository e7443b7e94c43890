-- The wait and fan-out machinery several verbs run (waiting.py): named after the rule step, not one verb.

-- name: waits_matching
SELECT run_id, step_id, condition, origin, kind FROM waits
WHERE event_name = %(name)s
  AND coalesce(match_path, '') = coalesce(%(path)s::text, '')
  AND coalesce(match_value, '') = coalesce(%(value)s::text, '')
ORDER BY created_at;

-- name: resolve_steps
-- Settle waiting steps from outside their runs (an event matched, a child finished), drop their
-- waits, and wake their runs: at once when suspended, at their suspension when still running.
-- A step that is no longer waiting (resolved or timed out meanwhile) is left alone.
WITH batch AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(step_ids)s::text[], %(statuses)s::text[], %(outputs)s::bytea[],
                         %(errors)s::bytea[]) AS b(run_id, step_id, status, output, error)
),
resolved AS (
    UPDATE steps s
    SET status = b.status, output = b.output, error = b.error, ended_at = coalesce(%(now)s::timestamptz, now())
    FROM batch b
    WHERE s.run_id = b.run_id AND s.id = b.step_id AND s.status = 'waiting'
    RETURNING s.run_id, s.id
),
gone_waits AS (
    DELETE FROM waits w USING resolved WHERE w.run_id = resolved.run_id AND w.step_id = resolved.id
),
woken AS (
    UPDATE runs r SET available_at = coalesce(%(now)s::timestamptz, now()), wake_requested = true
    WHERE r.id IN (SELECT run_id FROM resolved) AND r.status IN ('waiting', 'running')
    RETURNING r.status
)
SELECT array(SELECT run_id FROM resolved)::text[], array(SELECT id FROM resolved)::text[],
       (SELECT pg_notify('stepwell', current_schema())::text
        WHERE EXISTS (SELECT 1 FROM woken WHERE status = 'waiting')) IS NOT NULL;

-- name: finish_fan_outs
-- Mark done, once, each sealed fan-out none of whose children is unfinished, and wake its parent.
-- The store runs this after the commit that finished a child (or sealed the fan-out), so that of
-- two last children finishing at the same time, the later check sees both: no lock on a hot row.
WITH candidates AS (
    SELECT DISTINCT * FROM unnest(%(parent_ids)s::text[], %(step_ids)s::text[]) AS c(parent_id, step_id)
),
done AS (
    UPDATE fan_outs f SET done_at = coalesce(%(now)s::timestamptz, now())
    FROM candidates c
    WHERE f.parent_id = c.parent_id AND f.step_id = c.step_id AND f.total IS NOT NULL AND f.done_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM runs r
          WHERE r.parent_id = f.parent_id AND r.parent_step = f.step_id
            AND r.status NOT IN ('completed', 'failed', 'cancelled')
      )
    RETURNING f.parent_id
),
woken AS (
    UPDATE runs r SET available_at = coalesce(%(now)s::timestamptz, now()), wake_requested = true
    WHERE r.id IN (SELECT parent_id FROM done) AND r.status IN ('waiting', 'running')
    RETURNING r.status
)
SELECT (SELECT count(*) FROM done),
       (SELECT pg_notify('stepwell', current_schema())::text
        WHERE EXISTS (SELECT 1 FROM woken WHERE status = 'waiting')) IS NOT NULL;
