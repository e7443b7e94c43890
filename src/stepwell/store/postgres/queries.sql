-- Every statement the PostgreSQL store runs. Parameters are named; nothing is built from strings.
--
-- Time: `coalesce(%(now)s::timestamptz, now())` everywhere. The store passes NULL in production,
-- so the database clock is the one authority for leases and due times; tests pin it.
--
-- Batches: many runs travel in one statement as parallel arrays (`unnest`), so a batch costs one
-- round trip. Writes under a lease are compare-and-set on (id, lease_token, status = 'running');
-- a batch first locks its rows in id order (`ORDER BY r.id FOR NO KEY UPDATE`) so that two
-- batches touching the same runs (a heartbeat and a settlement) queue instead of deadlocking.
--
-- "Until woken" is 9999-12-31 23:59:59 UTC (as on SQLite): Python can read it, unlike 'infinity'.
--
-- Wake-ups: a statement that makes work ready now ends by NOTIFYing channel `stepwell` with the
-- schema name as payload (one NOTIFY per transaction; delivered at commit; only a hint).

-- name: configure_session
SELECT set_config('statement_timeout', coalesce(%(statement_timeout)s::text, current_setting('statement_timeout')), false),
       set_config('idle_in_transaction_session_timeout',
                  coalesce(%(idle_timeout)s::text, current_setting('idle_in_transaction_session_timeout')), false),
       set_config('TimeZone', 'UTC', false);

-- name: now
SELECT now();

-- name: listen
LISTEN stepwell;

-- name: listener_identity
SELECT set_config('application_name', left('stepwell-listen ' || coalesce(current_schema(), ''), 63), false),
       coalesce(current_schema(), '');

-- name: migrate_lock
SELECT pg_advisory_xact_lock(1400073551, hashtext(coalesce(current_schema(), '')));

-- name: migrate_create_table
CREATE TABLE IF NOT EXISTS stepwell_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM stepwell_migrations;

-- name: applied_migrations_table_exists
SELECT to_regclass('stepwell_migrations') IS NOT NULL;

-- name: migrate_record
INSERT INTO stepwell_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: append_events
-- A whole batch in one statement: the events, the runs of those that were new (a known id is
-- skipped by ON CONFLICT and starts nothing), and one NOTIFY when any run was queued.
-- Also returns the (name, match path) pairs of the waits on these event names. With
-- if_no_waits, nothing is written when there are any: the store then redoes the batch in a
-- transaction that also resumes the waits (the common case, no waits, stays one round trip).
-- The arrays go in binary (the `b` placeholders): in text format psycopg quotes every element of every array
-- in Python, which cost a bulk send more CPU than everything else it does.
WITH waiting AS (
    SELECT DISTINCT event_name, match_path FROM waits WHERE event_name = ANY(%(names)b::text[])
),
new_events AS (
    INSERT INTO events (id, name, data, ts, received_at, disposition, traceparent, tracestate)
    SELECT e.id, e.name, e.data, coalesce(e.ts, coalesce(%(now)s::timestamptz, now())),
           coalesce(%(now)s::timestamptz, now()), e.disposition, e.traceparent, e.tracestate
    FROM unnest(%(ids)b::text[], %(names)b::text[], %(datas)b::bytea[], %(tss)b::timestamptz[],
                %(dispositions)b::text[], %(traceparents)b::text[], %(tracestates)b::text[])
         AS e(id, name, data, ts, disposition, traceparent, tracestate)
    WHERE NOT (%(if_no_waits)s::boolean AND EXISTS (SELECT 1 FROM waiting))
      AND (SELECT stepwell_registry_check(%(generation)s::bigint))  -- once per statement; see registry.py
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
new_runs AS (
    INSERT INTO runs (id, function, event_id, input, input_name, parent_id, replay_of, on_failure,
                      status, attempt, max_attempts, priority, available_at, created_at)
    SELECT r.id, r.function, r.event_id, r.input, r.input_name, r.parent_id, r.replay_of, r.on_failure,
           'queued', 1, r.max_attempts, r.priority,
           coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now())
    FROM unnest(%(run_ids)b::text[], %(functions)b::text[], %(event_ids)b::text[], %(inputs)b::bytea[],
                %(input_names)b::text[], %(parent_ids)b::text[], %(replay_ofs)b::text[], %(on_failures)b::text[],
                %(max_attempts)b::integer[], %(priorities)b::integer[])
         AS r(id, function, event_id, input, input_name, parent_id, replay_of, on_failure, max_attempts, priority)
    WHERE r.event_id IN (SELECT id FROM new_events)
    RETURNING 1
)
SELECT array(SELECT id FROM new_events)::text[],
       array(SELECT event_name FROM waiting)::text[],
       array(SELECT match_path FROM waiting)::text[],
       (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM new_runs)) IS NOT NULL;

-- name: append_events_known_runs
SELECT event_id, array_agg(id ORDER BY id)::text[] FROM runs
WHERE event_id = ANY(%(event_ids)s::text[])
GROUP BY event_id;

-- name: create_runs
-- Arrays in binary, as in append_events.
WITH new_runs AS (
    INSERT INTO runs (id, function, event_id, input, input_name, parent_id, replay_of, on_failure,
                      status, attempt, max_attempts, priority, available_at, created_at)
    SELECT r.id, r.function, NULL, r.input, r.input_name, r.parent_id, r.replay_of, r.on_failure,
           'queued', 1, r.max_attempts, r.priority,
           coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now())
    FROM unnest(%(run_ids)b::text[], %(functions)b::text[], %(inputs)b::bytea[], %(input_names)b::text[],
                %(parent_ids)b::text[], %(replay_ofs)b::text[], %(on_failures)b::text[],
                %(max_attempts)b::integer[], %(priorities)b::integer[])
         AS r(id, function, input, input_name, parent_id, replay_of, on_failure, max_attempts, priority)
    RETURNING 1
)
SELECT (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM new_runs)) IS NOT NULL;

-- name: claim_runs
-- SKIP LOCKED over the partial index runs_ready: concurrent claimers never wait for each other
-- and never get the same run. Each claimed run comes back with its event and its memoized
-- steps (as parallel arrays, in replay order), so a claim is one round trip. Runs held by flow
-- control (hold) are outside the index. When the pick includes a run that must first take a
-- concurrency slot or a throttle turn (flow & 3), nothing is claimed and the first column says
-- so: the store then picks again in a transaction that admits those runs (claim_candidates).
WITH picked AS (
    SELECT id, flow FROM runs
    WHERE status IN ('queued', 'sleeping', 'waiting') AND hold IS NULL
      AND available_at <= coalesce(%(now)s::timestamptz, now())
      AND (%(functions)s::text[] IS NULL OR function = ANY(%(functions)s::text[]))  -- the worker's functions
      -- a paused function's runs wait. `function || ''`, not the column: the planner then estimates the
      -- filter from defaults (nearly every run passes) instead of the column's statistics, which in a
      -- queue of one function predict that none does, and would sort every ready run instead of
      -- walking runs_ready (tests/test_postgres_explain.py).
      AND (function || '') <> ALL(ARRAY(SELECT function FROM function_pauses))
    ORDER BY priority DESC, available_at, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
gated AS (
    SELECT count(*) > 0 AS found FROM picked WHERE flow & 3 <> 0
),
claimed AS (
    UPDATE runs r
    SET status = 'running', lease_owner = %(worker_id)s, lease_token = %(token)s, wake_requested = false,
        lease_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s::interval,
        started_at = coalesce(r.started_at, coalesce(%(now)s::timestamptz, now())), note = NULL,
        deadline_at = CASE WHEN r.timeout IS NOT NULL
                           THEN coalesce(r.deadline_at, coalesce(%(now)s::timestamptz, now()) + r.timeout) END
    FROM picked
    WHERE r.id = picked.id AND NOT (SELECT found FROM gated)
    RETURNING r.id, r.function, r.attempt, r.max_attempts, r.event_id, r.input, r.input_name, r.created_at,
              r.lease_expires_at, r.flow, r.priority, r.available_at, r.seq, r.traceparent, r.tracestate,
              r.trace_link
)
SELECT g.found, c.id, c.function, c.attempt, c.max_attempts, c.event_id, c.input, c.input_name, c.created_at,
       c.lease_expires_at, c.flow, coalesce(%(now)s::timestamptz, now()), e.name, e.data, e.ts,
       c.available_at, coalesce(c.traceparent, e.traceparent),
       CASE WHEN c.traceparent IS NULL THEN e.tracestate ELSE c.tracestate END, c.trace_link,
       s.ids, s.kinds, s.statuses, s.attempts, s.outputs, s.errors, s.started, s.ended, s.wakes, s.positions
FROM gated g
LEFT JOIN claimed c ON true
LEFT JOIN events e ON e.id = c.event_id
LEFT JOIN LATERAL (
    SELECT array_agg(st.id ORDER BY st.position)::text[] AS ids,
           array_agg(st.kind ORDER BY st.position)::text[] AS kinds,
           array_agg(st.status ORDER BY st.position)::text[] AS statuses,
           array_agg(st.attempts ORDER BY st.position)::integer[] AS attempts,
           array_agg(st.output ORDER BY st.position)::bytea[] AS outputs,
           array_agg(st.error ORDER BY st.position)::bytea[] AS errors,
           array_agg(st.started_at ORDER BY st.position)::timestamptz[] AS started,
           array_agg(st.ended_at ORDER BY st.position)::timestamptz[] AS ended,
           array_agg(st.wake_at ORDER BY st.position)::timestamptz[] AS wakes,
           array_agg(st.position ORDER BY st.position)::integer[] AS positions
    FROM steps st WHERE st.run_id = c.id
) s ON true
ORDER BY c.priority DESC, c.available_at, c.seq;

-- name: extend_leases
WITH batch AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(tokens)s::text[]) AS b(run_id, token)
    ORDER BY run_id
),
held AS (  -- driven by the batch, as in settle_runs_complete
    SELECT r.id
    FROM batch b
    CROSS JOIN LATERAL (SELECT id, status, lease_token FROM runs WHERE id = b.run_id OFFSET 0 FOR NO KEY UPDATE) r
    WHERE r.lease_token = b.token AND r.status = 'running'
)
UPDATE runs r SET lease_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s::interval
FROM held
WHERE r.id = held.id
RETURNING r.id, r.lease_expires_at;

-- name: record_step
-- FOR SHARE on the run fences the write: a rescue or cancel that commits first makes the lease
-- check fail; one that comes later waits until this step is written.
WITH lease AS (
    SELECT id FROM runs
    WHERE id = %(run_id)s AND lease_token = %(token)s AND status = 'running'
    FOR SHARE
)
INSERT INTO steps (run_id, id, position, kind, status, attempts, output, error, wake_at, started_at, ended_at)
SELECT lease.id, %(id)s, %(position)s, %(kind)s, %(status)s, 1, %(output)s::bytea, %(error)s::bytea,
       coalesce(%(wake_at)s::timestamptz, coalesce(%(now)s::timestamptz, now()) + %(sleep_for)s::interval),
       coalesce(%(started_at)s::timestamptz, %(now)s::timestamptz, now()),
       CASE WHEN %(ended)s::boolean THEN coalesce(%(now)s::timestamptz, now()) END
FROM lease
ON CONFLICT (run_id, id) DO UPDATE
SET status = excluded.status, output = excluded.output, error = excluded.error,
    ended_at = excluded.ended_at,
    attempts = steps.attempts + (CASE WHEN steps.status = 'errored' THEN 1 ELSE 0 END)
RETURNING attempts, started_at, ended_at, wake_at;

-- name: settle_runs_complete
-- The settle statements are driven by their batch: each run is looked up by primary key in a
-- LATERAL subquery that the planner can neither flatten nor push the lease checks into (OFFSET 0,
-- FOR NO KEY UPDATE), so the cost is linear in the batch whatever the number of leased runs and
-- whatever stale statistics say (a generic plan once looped over every leased run, rescanning the
-- batch for each). The batch is sorted so that rows are locked in id order, as everywhere else.
WITH batch AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(tokens)s::text[], %(outputs)s::bytea[]) AS b(run_id, token, output)
    ORDER BY run_id
),
held AS (
    SELECT r.id, b.output
    FROM batch b
    CROSS JOIN LATERAL (SELECT id, status, lease_token FROM runs WHERE id = b.run_id OFFSET 0 FOR NO KEY UPDATE) r
    WHERE r.lease_token = b.token AND r.status = 'running'
)
UPDATE runs r
SET status = 'completed', output = held.output, error = NULL, ended_at = coalesce(%(now)s::timestamptz, now()),
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
FROM held
WHERE r.id = held.id
RETURNING r.id, r.parent_id, r.parent_step, r.child_index, r.output, r.flow;

-- name: settle_runs_suspend
-- Sleep until `until`, or wait to be woken (`until` is then the timeout; NULL: none). Something
-- the run waits for that already happened during the attempt (wake_requested) resumes it at once.
WITH batch AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(tokens)s::text[], %(untils)s::timestamptz[], %(waiting)s::boolean[])
        AS b(run_id, token, until, waiting)
    ORDER BY run_id
),
held AS (  -- driven by the batch, as in settle_runs_complete
    SELECT r.id, b.until, b.waiting
    FROM batch b
    CROSS JOIN LATERAL (SELECT id, status, lease_token FROM runs WHERE id = b.run_id OFFSET 0 FOR NO KEY UPDATE) r
    WHERE r.lease_token = b.token AND r.status = 'running'
)
UPDATE runs r
SET status = CASE WHEN held.waiting THEN 'waiting' ELSE 'sleeping' END,
    available_at = CASE WHEN r.wake_requested THEN coalesce(%(now)s::timestamptz, now())
                        ELSE coalesce(held.until, '9999-12-31 23:59:59+00') END,
    wake_requested = false, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
FROM held
WHERE r.id = held.id
RETURNING r.id, r.flow;

-- name: settle_runs_retry
-- Requeue with a delay and append the attempt's error to the run's history, in one statement.
WITH batch AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(tokens)s::text[], %(errors)s::bytea[], %(delays)s::interval[])
        AS b(run_id, token, error, delay)
    ORDER BY run_id
),
held AS (  -- driven by the batch, as in settle_runs_complete
    SELECT r.id, b.error, b.delay
    FROM batch b
    CROSS JOIN LATERAL (SELECT id, status, lease_token FROM runs WHERE id = b.run_id OFFSET 0 FOR NO KEY UPDATE) r
    WHERE r.lease_token = b.token AND r.status = 'running'
),
retried AS (
    UPDATE runs r
    SET status = 'queued', attempt = r.attempt + 1,
        available_at = coalesce(%(now)s::timestamptz, now()) + held.delay, error = held.error,
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM held
    WHERE r.id = held.id
    RETURNING r.id, r.attempt - 1 AS failed_attempt, held.error, r.flow
),
history AS (
    INSERT INTO run_errors (run_id, seq, attempt, error, at)
    SELECT retried.id, coalesce((SELECT max(e.seq) FROM run_errors e WHERE e.run_id = retried.id), 0) + 1,
           retried.failed_attempt, retried.error, coalesce(%(now)s::timestamptz, now())
    FROM retried
)
SELECT id, flow FROM retried;

-- name: settle_runs_fail
-- A final failure: the run fails, its error joins the history, its dead letter is (re)opened.
-- Returns what the failure handler needs (its input), written by the store in the same transaction.
-- A NULL token fails the run in any unfinished state (a run past its whole-run timeout).
WITH batch AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(tokens)s::text[], %(errors)s::bytea[], %(reasons)s::text[])
        AS b(run_id, token, error, reason)
    ORDER BY run_id
),
held AS (  -- driven by the batch, as in settle_runs_complete
    SELECT r.id, b.error, b.reason
    FROM batch b
    CROSS JOIN LATERAL (SELECT id, status, lease_token FROM runs WHERE id = b.run_id OFFSET 0 FOR NO KEY UPDATE) r
    WHERE (r.lease_token = b.token AND r.status = 'running')
       OR (b.token IS NULL AND r.status IN ('queued', 'running', 'sleeping', 'waiting'))
),
failed AS (
    UPDATE runs r
    SET status = 'failed', error = held.error, ended_at = coalesce(%(now)s::timestamptz, now()), hold = NULL,
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM held
    WHERE r.id = held.id
    RETURNING r.id, r.function, r.attempt, r.on_failure, r.event_id, r.input, r.input_name, held.error, held.reason,
              r.parent_id, r.parent_step, r.child_index, r.flow
),
history AS (
    INSERT INTO run_errors (run_id, seq, attempt, error, at)
    SELECT failed.id, coalesce((SELECT max(e.seq) FROM run_errors e WHERE e.run_id = failed.id), 0) + 1,
           failed.attempt, failed.error, coalesce(%(now)s::timestamptz, now())
    FROM failed
),
dead AS (
    INSERT INTO dead_letters (run_id, function, error, reason, attempts, failed_at)
    SELECT failed.id, failed.function, failed.error, failed.reason, failed.attempt,
           coalesce(%(now)s::timestamptz, now())
    FROM failed
    ON CONFLICT (run_id) DO UPDATE
    SET error = excluded.error, reason = excluded.reason, attempts = excluded.attempts,
        failed_at = excluded.failed_at, redriven_at = NULL
)
SELECT f.id, f.parent_id, f.parent_step, f.child_index, f.error,
       f.function, f.on_failure, coalesce(e.name, f.input_name, f.function), coalesce(e.data, f.input),
       coalesce(%(now)s::timestamptz, now()), f.flow
FROM failed f
LEFT JOIN events e ON e.id = f.event_id;

-- name: release_runs
WITH batch AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(tokens)s::text[]) AS b(run_id, token)
    ORDER BY run_id
),
held AS (  -- driven by the batch, as in settle_runs_complete
    SELECT r.id
    FROM batch b
    CROSS JOIN LATERAL (SELECT id, status, lease_token FROM runs WHERE id = b.run_id OFFSET 0 FOR NO KEY UPDATE) r
    WHERE r.lease_token = b.token AND r.status = 'running'
),
released AS (
    UPDATE runs r
    SET status = 'queued', available_at = coalesce(%(now)s::timestamptz, now()),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM held
    WHERE r.id = held.id
    RETURNING r.id, r.flow
)
SELECT (SELECT count(*) FROM released),
       (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM released)) IS NOT NULL,
       array(SELECT id FROM released)::text[], array(SELECT flow FROM released)::integer[];

-- name: rescue_expired_leases_find
-- Locked until the rescue commits; SKIP LOCKED lets rescuers on many workers share the work.
SELECT id, lease_token, attempt, max_attempts FROM runs
WHERE status = 'running' AND lease_expires_at < coalesce(%(now)s::timestamptz, now())
ORDER BY lease_expires_at
LIMIT %(limit)s
FOR NO KEY UPDATE SKIP LOCKED;

-- name: rescue_expired_leases_requeue
-- The rows are already locked by rescue_expired_leases_find in the same transaction.
WITH batch AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(tokens)s::text[], %(errors)s::bytea[]) AS b(run_id, token, error)
),
requeued AS (
    UPDATE runs r
    SET status = 'queued', attempt = r.attempt + 1, available_at = coalesce(%(now)s::timestamptz, now()),
        error = b.error, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM batch b
    WHERE r.id = b.run_id AND r.lease_token = b.token AND r.status = 'running'
    RETURNING r.id, r.attempt - 1 AS failed_attempt, b.error, r.flow
),
history AS (
    INSERT INTO run_errors (run_id, seq, attempt, error, at)
    SELECT requeued.id, coalesce((SELECT max(e.seq) FROM run_errors e WHERE e.run_id = requeued.id), 0) + 1,
           requeued.failed_attempt, requeued.error, coalesce(%(now)s::timestamptz, now())
    FROM requeued
)
SELECT (SELECT count(*) FROM requeued),
       (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM requeued)) IS NOT NULL,
       array(SELECT id FROM requeued WHERE flow <> 0)::text[], array(SELECT flow FROM requeued WHERE flow <> 0)::integer[];

-- name: cancel_runs
WITH target AS (
    SELECT id FROM runs
    WHERE id = ANY(%(run_ids)s::text[]) AND status IN ('queued', 'running', 'sleeping', 'waiting')
    ORDER BY id
    FOR NO KEY UPDATE
)
UPDATE runs r
SET status = 'cancelled', ended_at = coalesce(%(now)s::timestamptz, now()), hold = NULL,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
FROM target
WHERE r.id = target.id
RETURNING r.id, r.parent_id, r.parent_step, r.child_index, r.error, r.flow;

-- name: redrive_by_filter
SELECT run_id FROM dead_letters
WHERE redriven_at IS NULL
  AND (%(function)s::text IS NULL OR function = %(function)s::text)
  AND (%(since)s::timestamptz IS NULL OR failed_at >= %(since)s::timestamptz)
ORDER BY failed_at
LIMIT %(limit)s;

-- name: redrive
-- Each open entry is marked once: entries are locked in run_id order and re-checked after the
-- lock, so a concurrent redrive of the same entries waits, then finds them taken and skips them.
WITH locked AS (
    SELECT run_id FROM dead_letters
    WHERE run_id = ANY(%(run_ids)s::text[]) AND redriven_at IS NULL
    ORDER BY run_id
    FOR UPDATE
),
marked AS (
    UPDATE dead_letters d
    SET redriven_at = coalesce(%(now)s::timestamptz, now()), redrive_count = d.redrive_count + 1
    FROM locked
    WHERE d.run_id = locked.run_id
    RETURNING d.run_id
),
requeued AS (
    UPDATE runs r
    SET status = 'queued', attempt = 1, available_at = coalesce(%(now)s::timestamptz, now()),
        error = NULL, ended_at = NULL, deadline_at = NULL
    FROM marked
    WHERE r.id = marked.run_id AND r.status = 'failed'
    RETURNING r.id, r.flow
),
reopened AS (
    UPDATE fan_outs f SET done_at = NULL, total = NULL
    FROM marked
    WHERE f.parent_id = marked.run_id
      AND f.step_id IN (SELECT s.id FROM steps s WHERE s.run_id = marked.run_id AND s.status IN ('failed', 'errored'))
),
forgotten AS (
    DELETE FROM steps s USING marked
    WHERE s.run_id = marked.run_id AND s.status IN ('failed', 'errored')
)
SELECT array(SELECT run_id FROM marked)::text[],
       (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM requeued)) IS NOT NULL,
       array(SELECT id FROM requeued WHERE flow & 4 <> 0)::text[];

-- name: redrive_family
-- A fan-out's redrive: its parent's open dead children, and the parent itself when it is dead.
SELECT d.run_id FROM dead_letters d JOIN runs r ON r.id = d.run_id
WHERE r.parent_id = %(parent_id)s AND d.redriven_at IS NULL
UNION ALL
SELECT run_id FROM dead_letters WHERE run_id = %(parent_id)s AND redriven_at IS NULL;

-- name: get_run
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs WHERE id = %(id)s;

-- name: get_run_steps
SELECT id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position
FROM steps WHERE run_id = %(run_id)s ORDER BY position;

-- name: time_out_step_resolved
SELECT id, kind, status, attempts, output, error, started_at, ended_at, wake_at, position
FROM steps WHERE run_id = %(run_id)s AND id = %(step_id)s;

-- name: get_run_errors
SELECT error FROM run_errors WHERE run_id = %(run_id)s ORDER BY seq;

-- name: list_runs
SELECT id, function, status, attempt, max_attempts, event_id, parent_id, created_at, started_at,
       ended_at, available_at, output, error, replay_of, ordering_key
FROM runs
WHERE (%(event_id)s::text IS NULL OR event_id = %(event_id)s::text)
  AND (%(ordering_key)s::text IS NULL OR ordering_key = %(ordering_key)s::text)
  AND (%(function)s::text IS NULL OR function = %(function)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(parent_id)s::text IS NULL OR parent_id = %(parent_id)s::text)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s::timestamptz)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)
  AND (%(page_at)s::timestamptz IS NULL OR (created_at, id) < (%(page_at)s::timestamptz, %(page_id)s::text))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: get_run_input
SELECT coalesce(e.name, r.input_name), coalesce(e.data, r.input)
FROM runs r LEFT JOIN events e ON e.id = r.event_id
WHERE r.id = %(id)s;

-- name: get_event
SELECT id, name, data, ts, received_at, disposition,
       array(SELECT r.id FROM runs r WHERE r.event_id = events.id ORDER BY r.id)::text[],
       array(SELECT s.function FROM event_skips s WHERE s.event_id = events.id ORDER BY s.function)::text[],
       array(SELECT s.reason FROM event_skips s WHERE s.event_id = events.id ORDER BY s.function)::text[],
       array(SELECT s.run_id FROM event_skips s WHERE s.event_id = events.id ORDER BY s.function)::text[]
FROM events WHERE id = %(id)s;

-- name: list_dead_letters
SELECT run_id, function, error, reason, failed_at, attempts, redrive_count, ordering_key, key_policy
FROM dead_letters
WHERE redriven_at IS NULL AND (%(function)s::text IS NULL OR function = %(function)s::text)
ORDER BY failed_at
LIMIT %(limit)s;

-- name: purge_runs
-- One batch: terminal runs past their retention, with their steps, errors and dead letter.
WITH doomed AS (
    SELECT id FROM runs
    WHERE (status IN ('completed', 'cancelled')
           AND ended_at < coalesce(%(now)s::timestamptz, now()) - %(completed)s::interval)
       OR (status = 'failed' AND ended_at < coalesce(%(now)s::timestamptz, now()) - %(dead_letters)s::interval)
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
),
gone_steps AS (DELETE FROM steps s USING doomed WHERE s.run_id = doomed.id),
gone_errors AS (DELETE FROM run_errors e USING doomed WHERE e.run_id = doomed.id),
gone_dead AS (DELETE FROM dead_letters d USING doomed WHERE d.run_id = doomed.id),
gone_waits AS (DELETE FROM waits w USING doomed WHERE w.run_id = doomed.id),
gone_fan_outs AS (DELETE FROM fan_outs f USING doomed WHERE f.parent_id = doomed.id),
gone_slots AS (DELETE FROM run_slots s USING doomed WHERE s.run_id = doomed.id),
gone_batch_events AS (DELETE FROM batch_events b USING doomed WHERE b.run_id = doomed.id)
DELETE FROM runs r USING doomed
WHERE r.id = doomed.id
RETURNING r.id;

-- name: purge_events
WITH doomed AS (
    SELECT e.id FROM events e
    WHERE e.received_at < coalesce(%(now)s::timestamptz, now()) - %(completed)s::interval
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id)
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM events e USING doomed
WHERE e.id = doomed.id;

-- name: queue_stats
SELECT
    (SELECT count(*) FROM runs
     WHERE status IN ('queued', 'sleeping', 'waiting') AND available_at <= coalesce(%(now)s::timestamptz, now())),
    (SELECT count(*) FROM runs
     WHERE status IN ('queued', 'sleeping', 'waiting') AND available_at > coalesce(%(now)s::timestamptz, now())
       AND available_at < '9999-12-31 23:59:59+00'),
    (SELECT count(*) FROM runs WHERE status = 'running'),
    (SELECT count(*) FROM dead_letters WHERE redriven_at IS NULL),
    (SELECT min(available_at) FROM runs
     WHERE status IN ('queued', 'sleeping', 'waiting') AND available_at > coalesce(%(now)s::timestamptz, now())
       AND available_at < '9999-12-31 23:59:59+00');

-- Waiting for events, child runs and fan-outs (migration 0002).

-- name: register_wait
-- Runs after the step's record_step in one transaction; writes nothing when the lease is gone.
INSERT INTO waits (run_id, step_id, event_name, match_path, match_value, condition, origin, expires_at, created_at)
SELECT id, %(step_id)s, %(event_name)s, %(match_path)s, %(match_value)s, %(condition)s, %(origin)s::bytea,
       coalesce(%(now)s::timestamptz, now()) + %(timeout)s::interval, coalesce(%(now)s::timestamptz, now())
FROM runs
WHERE id = %(run_id)s AND lease_token = %(token)s AND status = 'running'
ON CONFLICT DO NOTHING;

-- name: create_children
-- A chunk of a step's children (each created once: the ids are deterministic), fenced by the parent's lease.
WITH lease AS (
    SELECT id FROM runs
    WHERE id = %(parent_id)s AND lease_token = %(token)s AND status = 'running'
    FOR SHARE
),
new_children AS (
    INSERT INTO runs (id, function, event_id, input, input_name, parent_id, parent_step, child_index, on_failure,
                      status, attempt, max_attempts, priority, available_at, created_at)
    SELECT c.id, c.function, NULL, c.input, c.input_name, lease.id, %(step_id)s, c.child_index, c.on_failure,
           'queued', 1, c.max_attempts, c.priority,
           coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now())
    FROM unnest(%(run_ids)s::text[], %(functions)s::text[], %(inputs)s::bytea[], %(input_names)s::text[],
                %(child_indexes)s::integer[], %(on_failures)s::text[], %(max_attempts)s::integer[],
                %(priorities)s::integer[])
         AS c(id, function, input, input_name, child_index, on_failure, max_attempts, priority)
    CROSS JOIN lease
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM new_children),
       (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM new_children)) IS NOT NULL;

-- name: open_fan_out
-- Runs after the step's record_step in one transaction; writes nothing when the lease is gone.
INSERT INTO fan_outs (parent_id, step_id, function, tolerate, created_at)
SELECT id, %(step_id)s, %(function)s, %(tolerate)s, coalesce(%(now)s::timestamptz, now())
FROM runs
WHERE id = %(run_id)s AND lease_token = %(token)s AND status = 'running'
ON CONFLICT DO NOTHING;

-- name: seal_fan_out
WITH lease AS (
    SELECT id FROM runs
    WHERE id = %(run_id)s AND lease_token = %(token)s AND status = 'running'
    FOR SHARE
),
sealed AS (
    UPDATE fan_outs f SET total = %(total)s
    FROM lease
    WHERE f.parent_id = lease.id AND f.step_id = %(step_id)s
)
SELECT count(*) FROM lease;

-- name: wake_finished_fan_outs
SELECT parent_id, step_id FROM fan_outs WHERE total IS NOT NULL AND done_at IS NULL LIMIT %(limit)s;

-- name: fan_out_counts
SELECT f.total, f.done_at IS NOT NULL, c.statuses, c.counts
FROM (SELECT 1) AS one
LEFT JOIN fan_outs f ON f.parent_id = %(parent_id)s AND f.step_id = %(step_id)s
CROSS JOIN (
    SELECT array_agg(status)::text[] AS statuses, array_agg(n)::bigint[] AS counts
    FROM (SELECT status, count(*) AS n FROM runs
          WHERE parent_id = %(parent_id)s AND parent_step = %(step_id)s GROUP BY status) AS by_status
) AS c;

-- name: fan_out_results
SELECT child_index, id, status, output, error FROM runs
WHERE parent_id = %(parent_id)s AND parent_step = %(step_id)s AND child_index > %(after)s
ORDER BY child_index
LIMIT %(limit)s;

-- name: time_out_step
-- End a waiting step at its timeout (fenced): resolve it, drop its wait, cancel its invoked child.
-- Returns the step as it is afterwards (resolved here, or by an event that got there first).
WITH lease AS (
    SELECT id FROM runs
    WHERE id = %(run_id)s AND lease_token = %(token)s AND status = 'running'
    FOR SHARE
),
resolved AS (
    UPDATE steps s
    SET status = %(status)s, output = NULL, error = %(error)s::bytea, ended_at = coalesce(%(now)s::timestamptz, now())
    FROM lease
    WHERE s.run_id = lease.id AND s.id = %(step_id)s AND s.status = 'waiting'
    RETURNING s.id, s.kind, s.status, s.attempts, s.output, s.error, s.started_at, s.ended_at, s.wake_at, s.position
),
gone_wait AS (
    DELETE FROM waits w USING resolved WHERE w.run_id = %(run_id)s AND w.step_id = resolved.id
),
cancelled_child AS (
    UPDATE runs c
    SET status = 'cancelled', ended_at = coalesce(%(now)s::timestamptz, now()), hold = NULL,
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM resolved
    WHERE c.parent_id = %(run_id)s AND c.parent_step = resolved.id AND c.child_index IS NULL
      AND c.status IN ('queued', 'running', 'sleeping', 'waiting')
    RETURNING c.id, c.flow
)
SELECT (SELECT count(*) FROM lease) AS held, r.*,
       (SELECT id FROM cancelled_child), (SELECT flow FROM cancelled_child)
FROM resolved r
UNION ALL
SELECT (SELECT count(*) FROM lease), s.id, s.kind, s.status, s.attempts, s.output, s.error, s.started_at,
       s.ended_at, s.wake_at, s.position, NULL, NULL
FROM steps s
WHERE s.run_id = %(run_id)s AND s.id = %(step_id)s AND NOT EXISTS (SELECT 1 FROM resolved);
