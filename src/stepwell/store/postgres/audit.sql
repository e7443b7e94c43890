-- The audit log (store/postgres/audit.py).

-- name: append_audit
INSERT INTO audit_log (at, actor_id, actor_name, action, target, detail)
VALUES (coalesce(%(now)s::timestamptz, now()), %(actor_id)s, %(actor_name)s, %(action)s, %(target)s, %(detail)s);

-- name: list_audit
SELECT id, at, actor_id, actor_name, action, target, detail FROM audit_log
WHERE id < %(before)s ORDER BY id DESC LIMIT %(limit)s;

-- name: recent_endings
SELECT function, ended_at FROM runs
WHERE status = %(status)s AND ended_at IS NOT NULL AND ended_at >= %(since)s
ORDER BY ended_at DESC LIMIT %(limit)s;

-- name: list_recent_events
SELECT id, name, ts, received_at, disposition FROM events
WHERE (%(before_at)s::timestamptz IS NULL OR (received_at, id) < (%(before_at)s::timestamptz, %(before_id)s::text))
ORDER BY received_at DESC, id DESC LIMIT %(limit)s;
