-- Push endpoints (store/postgres/push.py).

-- name: set_push_endpoints_clear
DELETE FROM push_endpoints WHERE app = %(app)s;

-- name: set_push_endpoints_upsert
INSERT INTO push_endpoints (app, name, url, updated_at)
VALUES (%(app)s, %(name)s, %(url)s, coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (app, name) DO UPDATE SET url = excluded.url, updated_at = excluded.updated_at;

-- name: push_endpoints
SELECT p.name, p.url FROM push_endpoints p
JOIN registry r ON r.app = p.app AND r.name = p.name
WHERE r.retired_at IS NULL ORDER BY p.name;

-- name: push_circuits
SELECT url, open_until FROM push_circuits ORDER BY url;

-- name: set_push_circuit_open
INSERT INTO push_circuits (url, open_until) VALUES (%(url)s, %(until)s)
ON CONFLICT (url) DO UPDATE SET open_until = excluded.open_until;

-- name: set_push_circuit_close
DELETE FROM push_circuits WHERE url = %(url)s;
