-- API keys (store/postgres/apikeys.py).

-- name: create_api_key
INSERT INTO api_keys (id, name, scopes, token_hash, created_at)
VALUES (%(id)s, %(name)s, %(scopes)s, %(token_hash)s, coalesce(%(now)s::timestamptz, now()))
RETURNING created_at;

-- name: get_api_key
SELECT id, name, scopes, created_at, revoked_at, token_hash FROM api_keys WHERE id = %(id)s;

-- name: list_api_keys
SELECT id, name, scopes, created_at, revoked_at, token_hash FROM api_keys ORDER BY created_at, id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = coalesce(%(now)s::timestamptz, now()) WHERE id = %(id)s AND revoked_at IS NULL;
