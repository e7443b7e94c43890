-- API keys (store/sqlite/apikeys.py).

-- name: create_api_key
INSERT INTO api_keys (id, name, scopes, token_hash, created_at)
VALUES (:id, :name, :scopes, :token_hash, :now)
RETURNING created_at;

-- name: get_api_key
SELECT id, name, scopes, created_at, revoked_at, token_hash FROM api_keys WHERE id = :id;

-- name: list_api_keys
SELECT id, name, scopes, created_at, revoked_at, token_hash FROM api_keys ORDER BY created_at, id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL;
