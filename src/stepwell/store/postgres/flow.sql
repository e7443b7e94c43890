-- Flow control (migration 0003): named statements of store/postgres/flow.py and admission.py.
--
-- Serialisation: each ordering key, concurrency slot, gate, idempotency key, debounce and batch
-- has one row, and every transaction that reads it to decide something locks it first: then a
-- later statement sees everything committed before the lock was granted (READ COMMITTED takes a
-- new snapshot per statement), and so does an ON CONFLICT DO UPDATE, which acts on the latest
-- version of the row it waited for. Rows of one table are locked in key order, and tables in the
-- order store/postgres/flow.py gives, so that transactions never wait for each other in a circle.
--
-- Flags (runs.flow): 1 concurrency slots, 2 throttle, 4 ordering key, 8 cancel_on, 16 timeout,
-- 32 batch, 64 debounce.

-- name: flow_now
SELECT coalesce(%(now)s::timestamptz, now());

-- Locking rows that may not exist yet: insert a placeholder, or lock the row that is there (the
-- DO UPDATE ... WHERE false writes nothing but locks, and waits for a concurrent insert).

-- name: lock_keys
INSERT INTO ordering_keys AS k (function, key)
SELECT DISTINCT l.function, l.key FROM unnest(%(functions)s::text[], %(keys)s::text[]) AS l(function, key)
ORDER BY 1, 2
ON CONFLICT (function, key) DO UPDATE SET head = k.head WHERE false;

-- name: lock_gates
INSERT INTO gates AS g (scope, key, tat)
SELECT DISTINCT l.scope, l.key, coalesce(%(now)s::timestamptz, now())
FROM unnest(%(scopes)s::text[], %(keys)s::text[]) AS l(scope, key)
ORDER BY 1, 2
ON CONFLICT (scope, key) DO UPDATE SET tat = g.tat WHERE false;

-- name: lock_idempotency_keys
INSERT INTO idempotency_keys AS i (function, key, run_id, expires_at)
SELECT DISTINCT l.function, l.key, NULL::text, coalesce(%(now)s::timestamptz, now())
FROM unnest(%(functions)s::text[], %(keys)s::text[]) AS l(function, key)
ORDER BY 1, 2
ON CONFLICT (function, key) DO UPDATE SET run_id = i.run_id WHERE false;

-- name: lock_debounces
INSERT INTO debounces AS d (function, key, run_id, first_at)
SELECT DISTINCT l.function, l.key, NULL::text, coalesce(%(now)s::timestamptz, now())
FROM unnest(%(functions)s::text[], %(keys)s::text[]) AS l(function, key)
ORDER BY 1, 2
ON CONFLICT (function, key) DO UPDATE SET run_id = d.run_id WHERE false;

-- name: lock_batches
INSERT INTO batches AS b (function, key, run_id, size, count)
SELECT DISTINCT l.function, l.key, NULL::text, 0, 0
FROM unnest(%(functions)s::text[], %(keys)s::text[]) AS l(function, key)
ORDER BY 1, 2
ON CONFLICT (function, key) DO UPDATE SET run_id = b.run_id WHERE false;

-- name: lock_key_rows
-- Ordering keys that exist, locked in key order; returns their state as of the lock.
SELECT function, key, head, paused, parked FROM ordering_keys
WHERE (function, key) IN (SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[]))
ORDER BY function, key
FOR UPDATE;

-- States, read after the lock.

-- name: key_states
SELECT function, key, head, paused, parked FROM ordering_keys
WHERE (function, key) IN (SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[]));

-- name: gate_states
SELECT scope, key, tat FROM gates
WHERE (scope, key) IN (SELECT * FROM unnest(%(scopes)s::text[], %(keys)s::text[]));

-- name: idempotency_states
SELECT function, key, run_id, expires_at FROM idempotency_keys
WHERE (function, key) IN (SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[]));

-- name: debounce_states
-- The pending run of each debounce key, locked. One that another transaction holds (a claim
-- starting it, a cancel ending it) is not pending any more: the event then starts a new run.
SELECT d.function, d.key, r.id, d.first_at, r.event_id
FROM debounces d JOIN runs r ON r.id = d.run_id
WHERE (d.function, d.key) IN (SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[]))
  AND r.status = 'queued' AND r.started_at IS NULL
FOR NO KEY UPDATE OF r SKIP LOCKED;

-- name: batch_states
-- The open batch of each key, its run locked (as for debounce_states).
SELECT b.function, b.key, b.run_id, b.size, b.count
FROM batches b JOIN runs r ON r.id = b.run_id
WHERE (b.function, b.key) IN (SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[]))
  AND r.status = 'queued' AND r.started_at IS NULL AND b.count < b.size
FOR NO KEY UPDATE OF r SKIP LOCKED;

-- Admission at ingest: every decision is made in Python over the locked rows, then written here.

-- name: insert_flow_runs
-- In the given order, so that `seq` (a key's line) follows it.
WITH new_runs AS (
    INSERT INTO runs (id, function, event_id, input, input_name, parent_id, replay_of, on_failure,
                      status, attempt, max_attempts, priority, available_at, created_at,
                      flow, hold, note, ordering_key, park, throttle, timeout)
    SELECT r.id, r.function, r.event_id, r.input, r.input_name, r.parent_id, r.replay_of, r.on_failure,
           'queued', 1, r.max_attempts, r.priority, r.available_at, %(now)s::timestamptz,
           r.flow, r.hold, r.note, r.ordering_key, r.park, r.throttle, r.timeout
    FROM unnest(%(run_ids)s::text[], %(functions)s::text[], %(event_ids)s::text[], %(inputs)s::bytea[],
                %(input_names)s::text[], %(parent_ids)s::text[], %(replay_ofs)s::text[], %(on_failures)s::text[],
                %(max_attempts)s::integer[], %(priorities)s::integer[], %(available_ats)s::timestamptz[],
                %(flows)s::integer[], %(holds)s::text[], %(notes)s::text[], %(ordering_keys)s::text[],
                %(parks)s::boolean[], %(throttles)s::bytea[], %(timeouts)s::interval[])
         WITH ORDINALITY AS r(id, function, event_id, input, input_name, parent_id, replay_of, on_failure,
                              max_attempts, priority, available_at, flow, hold, note, ordering_key, park,
                              throttle, timeout, position)
    ORDER BY r.position
    RETURNING hold
)
SELECT (SELECT pg_notify('stepwell', current_schema())::text
        WHERE EXISTS (SELECT 1 FROM new_runs WHERE hold IS NULL)) IS NOT NULL;

-- name: insert_run_slots
INSERT INTO run_slots (run_id, scope, key, lim)
SELECT s.run_id, s.scope, s.key, s.lim
FROM unnest(%(run_ids)s::text[], %(scopes)s::text[], %(keys)s::text[], %(limits)s::integer[])
     WITH ORDINALITY AS s(run_id, scope, key, lim, position)
ORDER BY s.position;

-- name: insert_cancel_waits
INSERT INTO waits (run_id, step_id, event_name, match_path, match_value, condition, origin, expires_at, created_at, kind)
SELECT w.run_id, w.step_id, w.event_name, w.match_path, w.match_value, w.condition, w.origin, NULL,
       %(now)s::timestamptz, 'cancel'
FROM unnest(%(run_ids)s::text[], %(step_ids)s::text[], %(event_names)s::text[], %(match_paths)s::text[],
            %(match_values)s::text[], %(conditions)s::text[], %(origins)s::bytea[])
     AS w(run_id, step_id, event_name, match_path, match_value, condition, origin)
ON CONFLICT DO NOTHING;

-- name: save_keys
-- Ordering keys after a decision: a row with a head, or paused, is kept; any other is dropped
-- (a key with nobody in line has no row).
WITH state AS (
    SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[], %(heads)s::text[], %(paused)s::boolean[],
                         %(parked)s::boolean[]) AS s(function, key, head, paused, parked)
),
kept AS (
    UPDATE ordering_keys k SET head = s.head, paused = s.paused, parked = s.parked
    FROM state s
    WHERE k.function = s.function AND k.key = s.key AND (s.head IS NOT NULL OR s.paused)
)
DELETE FROM ordering_keys k USING state s
WHERE k.function = s.function AND k.key = s.key AND s.head IS NULL AND NOT s.paused;

-- name: save_gates
UPDATE gates g SET tat = s.tat
FROM unnest(%(scopes)s::text[], %(keys)s::text[], %(tats)s::timestamptz[]) AS s(scope, key, tat)
WHERE g.scope = s.scope AND g.key = s.key;

-- name: save_idempotency_keys
-- Taken keys get their run; placeholders that nobody took are dropped.
WITH state AS (
    SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[], %(run_ids)s::text[], %(expires)s::timestamptz[])
        AS s(function, key, run_id, expires_at)
),
taken AS (
    UPDATE idempotency_keys i SET run_id = s.run_id, expires_at = s.expires_at
    FROM state s
    WHERE i.function = s.function AND i.key = s.key AND s.run_id IS NOT NULL
)
DELETE FROM idempotency_keys i USING state s
WHERE i.function = s.function AND i.key = s.key AND s.run_id IS NULL AND i.run_id IS NULL;

-- name: save_debounces
WITH state AS (
    SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[], %(run_ids)s::text[], %(first_ats)s::timestamptz[])
        AS s(function, key, run_id, first_at)
),
started AS (
    UPDATE debounces d SET run_id = s.run_id, first_at = s.first_at
    FROM state s
    WHERE d.function = s.function AND d.key = s.key AND s.run_id IS NOT NULL
)
DELETE FROM debounces d USING state s
WHERE d.function = s.function AND d.key = s.key AND s.run_id IS NULL AND d.run_id IS NULL;

-- name: save_batches
WITH state AS (
    SELECT * FROM unnest(%(functions)s::text[], %(keys)s::text[], %(run_ids)s::text[], %(sizes)s::integer[],
                         %(counts)s::integer[]) AS s(function, key, run_id, size, count)
),
filled AS (
    UPDATE batches b SET run_id = s.run_id, size = s.size, count = s.count
    FROM state s
    WHERE b.function = s.function AND b.key = s.key AND s.run_id IS NOT NULL
)
DELETE FROM batches b USING state s
WHERE b.function = s.function AND b.key = s.key AND s.run_id IS NULL AND b.run_id IS NULL;

-- name: insert_batch_events
INSERT INTO batch_events (run_id, seq, event_id)
SELECT * FROM unnest(%(run_ids)s::text[], %(seqs)s::integer[], %(event_ids)s::text[]);

-- name: push_pending_runs
-- Debounced runs take their newest event and a later start; full batches start now.
WITH pushed AS (
    UPDATE runs r SET event_id = coalesce(p.event_id, r.event_id), available_at = p.available_at,
                      note = CASE WHEN p.event_id IS NULL THEN NULL ELSE r.note END
    FROM unnest(%(run_ids)s::text[], %(event_ids)s::text[], %(available_ats)s::timestamptz[])
         AS p(run_id, event_id, available_at)
    WHERE r.id = p.run_id
    RETURNING r.available_at
)
SELECT (SELECT pg_notify('stepwell', current_schema())::text
        WHERE EXISTS (SELECT 1 FROM pushed WHERE available_at <= %(now)s::timestamptz)) IS NOT NULL;

-- name: insert_skips
INSERT INTO event_skips (event_id, function, reason, run_id)
SELECT * FROM unnest(%(event_ids)s::text[], %(functions)s::text[], %(reasons)s::text[], %(run_ids)s::text[])
ON CONFLICT DO NOTHING;

-- name: mark_debounced
-- The events later ones replaced in their pending debounced runs: `debounced`, unless they still own a run.
UPDATE events e SET disposition = 'debounced'
WHERE e.id = ANY(%(event_ids)s::text[]) AND e.disposition = 'started'
  AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id);

-- name: set_dispositions
UPDATE events e SET disposition = d.disposition
FROM unnest(%(event_ids)s::text[], %(dispositions)s::text[]) AS d(id, disposition)
WHERE e.id = d.id;

-- Claiming runs with concurrency limits or a throttle (see claim_runs in queries.sql).

-- name: claim_candidates
-- As claim_runs picks, in a transaction that admits them before claiming: each with its throttle,
-- its concurrency limits (scope order) with their slots' use, and the time to admit it at. The
-- slots are locked here, in key order (a missing one inserted): the no-op update waits for a
-- concurrent holder and returns the row as it is once locked.
WITH picked AS (
    SELECT r.id, r.flow, r.throttle, r.priority, r.available_at, r.seq FROM runs r
    WHERE r.status IN ('queued', 'sleeping', 'waiting') AND r.hold IS NULL
      AND r.available_at <= coalesce(%(now)s::timestamptz, now())
      AND (%(functions)s::text[] IS NULL OR r.function = ANY(%(functions)s::text[]))
      AND (r.function || '') <> ALL(ARRAY(SELECT function FROM function_pauses))  -- paused: as in claim_runs
    ORDER BY r.priority DESC, r.available_at, r.seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
wanted AS (
    SELECT rs.run_id, rs.scope, rs.key, rs.lim FROM run_slots rs JOIN picked p ON p.id = rs.run_id
    WHERE p.flow & 1 <> 0
),
locked AS (
    INSERT INTO slots AS s (scope, key, in_use)
    SELECT DISTINCT w.scope, w.key, 0 FROM wanted w
    ORDER BY 1, 2
    ON CONFLICT (scope, key) DO UPDATE SET in_use = s.in_use
    RETURNING s.scope, s.key, s.in_use
)
SELECT p.id, p.flow, p.throttle, coalesce(c.scopes, '{}'), coalesce(c.keys, '{}'), coalesce(c.limits, '{}'),
       coalesce(c.in_use, '{}'), coalesce(%(now)s::timestamptz, now())
FROM picked p
LEFT JOIN LATERAL (
    SELECT array_agg(w.scope ORDER BY w.scope)::text[] AS scopes, array_agg(w.key ORDER BY w.scope)::text[] AS keys,
           array_agg(w.lim ORDER BY w.scope)::integer[] AS limits, array_agg(l.in_use ORDER BY w.scope)::integer[] AS in_use
    FROM wanted w JOIN locked l ON l.scope = w.scope AND l.key = w.key
    WHERE w.run_id = p.id
) c ON true
ORDER BY p.priority DESC, p.available_at, p.seq;

-- name: save_admissions
-- The outcome of admitting candidates: runs held for a full slot (waiting on that slot's scope),
-- runs throttled until their next turn, and the slots and gates as they now stand.
WITH held AS (
    UPDATE runs r SET hold = 'concurrency'
    FROM unnest(%(held_ids)s::text[]) AS h(id)
    WHERE r.id = h.id
),
waiting AS (
    UPDATE run_slots s SET waiting = true
    FROM unnest(%(held_ids)s::text[], %(held_scopes)s::text[]) AS h(run_id, scope)
    WHERE s.run_id = h.run_id AND s.scope = h.scope
),
throttled AS (
    UPDATE runs r SET available_at = t.available_at, note = 'throttled'
    FROM unnest(%(throttled_ids)s::text[], %(retry_ats)s::timestamptz[]) AS t(id, available_at)
    WHERE r.id = t.id
),
taken AS (
    UPDATE slots s SET in_use = v.in_use
    FROM unnest(%(slot_scopes)s::text[], %(slot_keys)s::text[], %(in_uses)s::integer[]) AS v(scope, key, in_use)
    WHERE s.scope = v.scope AND s.key = v.key
)
UPDATE gates g SET tat = v.tat
FROM unnest(%(gate_scopes)s::text[], %(gate_keys)s::text[], %(tats)s::timestamptz[]) AS v(scope, key, tat)
WHERE g.scope = v.scope AND g.key = v.key;

-- name: claim_picked
-- claim_runs for runs this transaction has picked and admitted; same columns.
WITH claimed AS (
    UPDATE runs r
    SET status = 'running', lease_owner = %(worker_id)s, lease_token = %(token)s, wake_requested = false,
        lease_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s::interval,
        started_at = coalesce(r.started_at, coalesce(%(now)s::timestamptz, now())), note = NULL,
        slots_held = r.flow & 1 <> 0,
        deadline_at = CASE WHEN r.timeout IS NOT NULL
                           THEN coalesce(r.deadline_at, coalesce(%(now)s::timestamptz, now()) + r.timeout) END
    WHERE r.id = ANY(%(ids)s::text[])
    RETURNING r.id, r.function, r.attempt, r.max_attempts, r.event_id, r.input, r.input_name, r.created_at,
              r.lease_expires_at, r.flow, r.priority, r.available_at, r.seq, r.traceparent, r.tracestate,
              r.trace_link
)
SELECT false, c.id, c.function, c.attempt, c.max_attempts, c.event_id, c.input, c.input_name, c.created_at,
       c.lease_expires_at, c.flow, coalesce(%(now)s::timestamptz, now()), e.name, e.data, e.ts,
       c.available_at, coalesce(c.traceparent, e.traceparent),
       CASE WHEN c.traceparent IS NULL THEN e.tracestate ELSE c.tracestate END, c.trace_link,
       s.ids, s.kinds, s.statuses, s.attempts, s.outputs, s.errors, s.started, s.ended, s.wakes, s.positions
FROM claimed c
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

-- name: batch_events_of
SELECT b.run_id, e.id, e.name, e.data, e.ts FROM batch_events b JOIN events e ON e.id = b.event_id
WHERE b.run_id = ANY(%(run_ids)s::text[])
ORDER BY b.run_id, b.seq;

-- Leaving: a run stops running (settled, released, rescued) or ends for good.

-- name: lock_held_slots
-- The slots these runs hold (the caller holds the runs), locked in key order; give_slots follows.
SELECT s.scope, s.key FROM slots s
WHERE (s.scope, s.key) IN (
    SELECT rs.scope, rs.key FROM run_slots rs JOIN runs r ON r.id = rs.run_id
    WHERE r.id = ANY(%(run_ids)s::text[]) AND r.slots_held
)
ORDER BY s.scope, s.key
FOR UPDATE OF s;

-- name: give_slots
-- After lock_held_slots: these runs give their slots back, and one waiting run per slot given is
-- promoted, oldest first. A waiter that another transaction holds is waited for, then re-checked
-- (a cancel ends it).
WITH released AS (
    UPDATE runs SET slots_held = false WHERE id = ANY(%(run_ids)s::text[]) AND slots_held RETURNING id
),
freed AS (
    SELECT rs.scope, rs.key, count(*)::integer AS n FROM run_slots rs JOIN released ON rs.run_id = released.id
    GROUP BY rs.scope, rs.key
),
given AS (
    UPDATE slots s SET in_use = greatest(s.in_use - f.n, 0)
    FROM freed f
    WHERE s.scope = f.scope AND s.key = f.key
),
waiter AS (
    SELECT w.id, f.scope FROM freed f
    CROSS JOIN LATERAL (
        SELECT r.id FROM run_slots rs JOIN runs r ON r.id = rs.run_id
        WHERE rs.scope = f.scope AND rs.key = f.key AND rs.waiting
          AND r.hold = 'concurrency' AND r.status IN ('queued', 'sleeping', 'waiting')
        ORDER BY rs.seq
        LIMIT f.n
        FOR NO KEY UPDATE OF r
    ) w
),
promoted AS (
    UPDATE runs r SET hold = NULL FROM waiter WHERE r.id = waiter.id RETURNING r.id
),
unmarked AS (
    UPDATE run_slots rs SET waiting = false FROM waiter WHERE rs.run_id = waiter.id AND rs.scope = waiter.scope
)
SELECT (SELECT count(*) FROM promoted),
       (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM promoted)) IS NOT NULL;

-- name: forget_run_flow
-- A run ended: it waits for no slot and no cancel event any more.
WITH unmarked AS (
    UPDATE run_slots SET waiting = false WHERE run_id = ANY(%(slot_run_ids)s::text[]) AND waiting
)
DELETE FROM waits WHERE run_id = ANY(%(cancel_run_ids)s::text[]) AND kind = 'cancel';

-- name: lock_heads
-- The ordering keys that these ended runs hold, locked in key order; move_keys follows. A run
-- becomes a key's head only in a transaction that holds the run's row, and the caller holds these
-- runs: a key found here is theirs, and a run of theirs that holds no key (one waiting in line)
-- locks none.
SELECT k.function, k.key
FROM runs r JOIN ordering_keys k ON k.function = r.function AND k.key = r.ordering_key AND k.head = r.id
WHERE r.id = ANY(%(run_ids)s::text[])
ORDER BY k.function, k.key
FOR UPDATE OF k;

-- name: move_keys
-- After lock_heads: each key whose head ended moves on. A head that failed marks its dead letter
-- with the key's policy, and parks the key (on_dead_letter='park') or skips past it; otherwise the
-- key goes to its next run in line (held as 'paused' while the key is paused), or, with nobody left
-- in line, keeps no head (and no row unless paused). The next run is locked, and re-checked if
-- another transaction held it (a cancel takes it out of line). Returns the new heads ('' for none)
-- in key order.
WITH ended AS (
    SELECT * FROM unnest(%(run_ids)s::text[], %(failed)s::boolean[]) AS e(id, failed)
),
heads AS (
    SELECT k.function, k.key, k.paused, r.id, r.park, e.failed
    FROM ended e
    JOIN runs r ON r.id = e.id
    JOIN ordering_keys k ON k.function = r.function AND k.key = r.ordering_key AND k.head = r.id
),
marked AS (
    UPDATE dead_letters d SET ordering_key = h.key, key_policy = CASE WHEN h.park THEN 'parked' ELSE 'skipped' END
    FROM heads h
    WHERE d.run_id = h.id AND h.failed
),
parked AS (
    UPDATE ordering_keys k SET parked = true
    FROM heads h
    WHERE k.function = h.function AND k.key = h.key AND h.failed AND h.park
),
next AS (
    SELECT h.function, h.key, h.paused, n.id FROM heads h
    LEFT JOIN LATERAL (
        SELECT r.id FROM runs r
        WHERE r.function = h.function AND r.ordering_key = h.key AND r.hold IN ('ordering', 'paused')
        ORDER BY r.seq
        LIMIT 1
        FOR NO KEY UPDATE
    ) n ON true
    WHERE NOT (h.failed AND h.park)
),
promoted AS (
    UPDATE runs r SET hold = CASE WHEN next.paused THEN 'paused' END
    FROM next WHERE r.id = next.id
    RETURNING r.hold
),
kept AS (
    UPDATE ordering_keys k SET head = next.id, parked = false
    FROM next
    WHERE k.function = next.function AND k.key = next.key AND (next.id IS NOT NULL OR next.paused)
),
dropped AS (
    DELETE FROM ordering_keys k USING next
    WHERE k.function = next.function AND k.key = next.key AND next.id IS NULL AND NOT next.paused
)
SELECT array(SELECT coalesce(next.id, '') FROM next ORDER BY next.function, next.key)::text[],
       (SELECT pg_notify('stepwell', current_schema())::text
        WHERE EXISTS (SELECT 1 FROM promoted WHERE hold IS NULL)) IS NOT NULL;

-- name: set_holds
WITH held AS (
    UPDATE runs r SET hold = h.hold
    FROM unnest(%(run_ids)s::text[], %(holds)s::text[]) AS h(id, hold)
    WHERE r.id = h.id
    RETURNING r.hold
)
SELECT (SELECT pg_notify('stepwell', current_schema())::text
        WHERE EXISTS (SELECT 1 FROM held WHERE hold IS NULL)) IS NOT NULL;

-- name: key_line_of
-- Redriven runs of ordered keys, by their original place in line.
SELECT id, function, ordering_key FROM runs WHERE id = ANY(%(run_ids)s::text[]) ORDER BY seq;

-- Operating a key.

-- name: pause_head
-- SKIP LOCKED: a head that another transaction holds is starting (a claim: a run in progress
-- carries on) or ending (a cancel, which then promotes the next run under this key's lock).
WITH head AS (
    SELECT id FROM runs WHERE id = %(run_id)s AND status = 'queued' AND hold IS NULL
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE runs r SET hold = 'paused' FROM head WHERE r.id = head.id;

-- name: resume_head
WITH head AS (
    SELECT id FROM runs WHERE id = %(run_id)s AND hold = 'paused'
    FOR NO KEY UPDATE SKIP LOCKED
),
resumed AS (
    UPDATE runs r SET hold = NULL FROM head WHERE r.id = head.id RETURNING r.id
)
SELECT (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM resumed)) IS NOT NULL;

-- name: drain_key
SELECT id FROM runs
WHERE function = %(function)s AND ordering_key = %(key)s AND status = 'queued' AND started_at IS NULL
ORDER BY seq;

-- name: fail_overdue_runs
SELECT id FROM runs
WHERE deadline_at < coalesce(%(now)s::timestamptz, now()) AND status IN ('queued', 'running', 'sleeping', 'waiting')
ORDER BY id
LIMIT %(limit)s
FOR NO KEY UPDATE SKIP LOCKED;

-- name: get_run_explain
-- Why a run has not started (or resumed): its hold, its key, the slot it waits for, its wait, a pause
-- of its function.
SELECT r.status, r.hold, r.note, r.ordering_key, r.available_at, r.attempt,
       r.available_at > coalesce(%(now)s::timestamptz, now()),
       k.head, coalesce(k.paused, false), coalesce(k.parked, false),
       ws.scope, ws.key, ws.lim, coalesce(sl.in_use, 0),
       (SELECT w.event_name FROM waits w WHERE w.run_id = r.id AND w.kind = 'wait' LIMIT 1),
       r.function, EXISTS (SELECT 1 FROM function_pauses p WHERE p.function = r.function)
FROM runs r
LEFT JOIN ordering_keys k ON k.function = r.function AND k.key = r.ordering_key
LEFT JOIN LATERAL (
    SELECT s.scope, s.key, s.lim FROM run_slots s WHERE s.run_id = r.id AND s.waiting LIMIT 1
) ws ON true
LEFT JOIN slots sl ON sl.scope = ws.scope AND sl.key = ws.key
WHERE r.id = %(run_id)s;
