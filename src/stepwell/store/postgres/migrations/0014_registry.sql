-- Version 14: the function registry. Same tables as SQLite's 0014. Every app writes its functions'
-- definitions here when it starts; ingest routes events from these rows, so a producer needs none
-- of the user's code. Registrations take an exclusive advisory lock, ingest a shared one (registry.sql).

CREATE TABLE registry (
    app           text NOT NULL,
    name          text NOT NULL,
    version       text NOT NULL,          -- SHA-256 of the canonical definition document
    definition    jsonb NOT NULL,         -- the definition (model/definition.py)
    registered_at timestamptz NOT NULL,   -- first registered
    updated_at    timestamptz NOT NULL,   -- the current version's registration, or the retirement
    retired_at    timestamptz,            -- the app re-registered without it (or another app took the name)
    PRIMARY KEY (app, name)
);
-- a function name is served by one app at a time: runs and flow control are keyed by the name
CREATE UNIQUE INDEX registry_served_name ON registry (name) WHERE retired_at IS NULL;

-- Every change a registration made: added, changed (a new version), retired, moved (to another app).
CREATE TABLE registry_log (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    app         text NOT NULL,
    name        text NOT NULL,
    change      text NOT NULL,
    old_version text,
    new_version text
);

-- One row: bumped by every registration that changed something; ingest checks it in its transaction.
CREATE TABLE registry_state (
    id         integer PRIMARY KEY CHECK (id = 1),
    generation bigint NOT NULL
);
INSERT INTO registry_state (id, generation) VALUES (1, 0);

-- The ingest gate, called inside the statement (or transaction) that stores events: hold the registry
-- lock shared until the transaction ends, then read the generation (a statement of its own, so a
-- snapshot taken after the lock was granted) and raise SW001 with the current generation when it is
-- not the one the events' runs were decided from. NULL: no check, no lock.
CREATE FUNCTION stepwell_registry_check(expected bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    current_generation bigint;
BEGIN
    IF expected IS NULL THEN
        RETURN true;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1400073552, hashtext(coalesce(current_schema(), '')));
    SELECT generation INTO current_generation FROM registry_state WHERE id = 1;
    IF current_generation IS DISTINCT FROM expected THEN
        RAISE EXCEPTION USING ERRCODE = 'SW001', MESSAGE = current_generation::text;
    END IF;
    RETURN true;
END
$$;
