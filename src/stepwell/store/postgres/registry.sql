-- The function registry (store/postgres/registry.py). Registrations hold the registry lock (an
-- advisory lock per schema) exclusively (tried, never waited for); ingest holds it shared for its
-- transaction, then reads the generation in a later statement (a snapshot taken after the lock).

-- name: append_events_registry_lock
SELECT pg_advisory_xact_lock_shared(1400073552, hashtext(coalesce(current_schema(), '')));

-- name: register_functions_lock
-- Registrations try, and retry later: one waiting here would queue every new ingest behind it.
SELECT pg_try_advisory_xact_lock(1400073552, hashtext(coalesce(current_schema(), '')));

-- name: register_functions_generation
SELECT generation FROM registry_state WHERE id = 1;

-- name: register_functions_rows
-- The app's rows, and the served rows of other apps with one of the names it registers.
SELECT app, name, version, definition::text, registered_at, updated_at, retired_at FROM registry
WHERE app = %(app)s OR (retired_at IS NULL AND name = ANY(%(names)s::text[]));

-- name: list_functions
-- With the time each function was paused (NULL: not paused), by name as runs are keyed.
SELECT generation, app, name, version, definition::text, registered_at, updated_at, retired_at, p.paused_at
FROM registry_state LEFT JOIN registry ON true
LEFT JOIN function_pauses p ON p.function = registry.name
WHERE registry_state.id = 1
ORDER BY app, name;

-- name: register_functions_retire
UPDATE registry SET retired_at = coalesce(%(now)s::timestamptz, now()), updated_at = coalesce(%(now)s::timestamptz, now())
WHERE app = %(app)s AND name = %(name)s;

-- name: register_functions_upsert
INSERT INTO registry (app, name, version, definition, registered_at, updated_at, retired_at)
VALUES (%(app)s, %(name)s, %(version)s, %(definition)s::jsonb, coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()), NULL)
ON CONFLICT (app, name) DO UPDATE
SET version = excluded.version, definition = excluded.definition, updated_at = excluded.updated_at,
    retired_at = NULL;

-- name: register_functions_log
INSERT INTO registry_log (at, app, name, change, old_version, new_version)
VALUES (coalesce(%(now)s::timestamptz, now()), %(app)s, %(name)s, %(change)s, %(old_version)s, %(new_version)s);

-- name: register_functions_bump
UPDATE registry_state SET generation = %(generation)s WHERE id = 1;

-- name: append_events_registry_check
-- The first statement of an ingest transaction: raises SW001 unless the registry is at %(generation)s.
SELECT stepwell_registry_check(%(generation)s::bigint);

-- Pausing a whole function (migration 0015). The claim (queries.sql: claim_runs; flow.sql:
-- claim_candidates) skips the runs of a paused function; nothing else changes, so resuming is
-- deleting the row, and a notification wakes the workers to claim what it released.

-- name: set_function_paused_pause
-- The row as it is after the statement: a second pause keeps the first time (the no-op update
-- returns the row, and waits for a concurrent pause or resume of the same function).
INSERT INTO function_pauses AS p (function, paused_at)
VALUES (%(function)s, coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (function) DO UPDATE SET paused_at = p.paused_at
RETURNING p.paused_at;

-- name: set_function_paused_resume
WITH resumed AS (
    DELETE FROM function_pauses WHERE function = %(function)s RETURNING 1
)
SELECT (SELECT pg_notify('stepwell', current_schema())::text WHERE EXISTS (SELECT 1 FROM resumed)) IS NOT NULL;
