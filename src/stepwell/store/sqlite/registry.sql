-- The function registry (store/sqlite/registry.py): named statements, each run inside the store's
-- write transaction (BEGIN IMMEDIATE serialises registrations and ingest) or on a reader.

-- name: registry_generation
SELECT generation FROM registry_state WHERE id = 1;

-- name: registry_rows_for
-- The app's rows, and the served rows of other apps with one of the names it registers.
SELECT app, name, version, definition, registered_at, updated_at, retired_at FROM registry
WHERE app = :app OR (retired_at IS NULL AND name IN (SELECT value FROM json_each(:names)));

-- name: registry_all
SELECT app, name, version, definition, registered_at, updated_at, retired_at FROM registry ORDER BY app, name;

-- name: registry_retire
UPDATE registry SET retired_at = :now, updated_at = :now WHERE app = :app AND name = :name;

-- name: registry_upsert
INSERT INTO registry (app, name, version, definition, registered_at, updated_at, retired_at)
VALUES (:app, :name, :version, :definition, :now, :now, NULL)
ON CONFLICT (app, name) DO UPDATE
SET version = excluded.version, definition = excluded.definition, updated_at = excluded.updated_at,
    retired_at = NULL;

-- name: registry_log_insert
INSERT INTO registry_log (at, app, name, change, old_version, new_version)
VALUES (:now, :app, :name, :change, :old_version, :new_version);

-- name: registry_bump
UPDATE registry_state SET generation = :generation WHERE id = 1;
