-- Version 6: API keys of the HTTP API. Only the SHA-256 of a token is stored; the id is public.

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,     -- 16 hex characters, the middle part of the token
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,        -- comma-separated: ingest, read, operate, admin
    token_hash TEXT NOT NULL,        -- hex SHA-256 of the whole token
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
