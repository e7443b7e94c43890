-- The function registry (store/sqlite/registry.py): named statements, each run inside the store's
-- write transaction (BEGIN IMMEDIATE serialises registrations and ingest) or on a reader.

-- name: register_functions_generation
SELECT generation FROM registry_state WHERE id = 1;

-- name: register_functions_rows
-- The app's rows, and the served rows of other apps with one of the names it registers.
SELECT app, name, version, definition, registered_at, updated_at, retired_at FROM registry
WHERE app = :app OR (retired_at IS NULL AND name IN (SELECT value FROM json_each(:names)));

-- name: list_functions
-- With the time each function was paused (NULL: not paused), by name as runs are keyed.
SELECT r.app, r.name, r.version, r.definition, r.registered_at, r.updated_at, r.retired_at, p.paused_at
FROM registry r LEFT JOIN function_pauses p ON p.function = r.name
ORDER BY r.app, r.name;

-- name: register_functions_retire
UPDATE registry SET retired_at = :now, updated_at = :now WHERE app = :app AND name = :name;

-- name: register_functions_upsert
INSERT INTO registry (app, name, version, definition, registered_at, updated_at, retired_at)
VALUES (:app, :name, :version, :definition, :now, :now, NULL)
ON CONFLICT (app, name) DO UPDATE
SET version = excluded.version, definition = excluded.definition, updated_at = excluded.updated_at,
    retired_at = NULL;

-- name: register_functions_log
INSERT INTO registry_log (at, app, name, change, old_version, new_version)
VALUES (:now, :app, :name, :change, :old_version, :new_version);

-- name: register_functions_bump
UPDATE registry_state SET generation = :generation WHERE id = 1;

-- Pausing a whole function (migration 0015). The claim (queries.sql: claim_runs_any_ready; flow.sql: claim_candidates)
-- skips the runs of a paused function; nothing else changes, so resuming is deleting the row.

-- name: set_function_paused_pause
INSERT INTO function_pauses (function, paused_at) VALUES (:function, :now) ON CONFLICT (function) DO NOTHING;

-- name: set_function_paused_resume
DELETE FROM function_pauses WHERE function = :function;

-- name: set_function_paused_at
SELECT paused_at FROM function_pauses WHERE function = :function;
