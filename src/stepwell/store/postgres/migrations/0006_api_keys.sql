-- Version 6: API keys of the HTTP API. Same table as SQLite's 0006. Only the SHA-256 of a token is stored.

CREATE TABLE api_keys (
    id         text PRIMARY KEY,     -- 16 hex characters, the middle part of the token
    name       text NOT NULL,
    scopes     text NOT NULL,        -- comma-separated: ingest, read, operate, admin
    token_hash text NOT NULL,        -- hex SHA-256 of the whole token
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
