-- The audit log (store/sqlite/audit.py).

-- name: append_audit
INSERT INTO audit_log (at, actor_id, actor_name, action, target, detail)
VALUES (:now, :actor_id, :actor_name, :action, :target, :detail);

-- name: list_audit
SELECT id, at, actor_id, actor_name, action, target, detail FROM audit_log
WHERE id < :before ORDER BY id DESC LIMIT :limit;

-- name: recent_endings
SELECT function, ended_at FROM runs
WHERE status = :status AND ended_at IS NOT NULL AND ended_at >= :since
ORDER BY ended_at DESC LIMIT :limit;

-- name: list_recent_events
SELECT id, name, ts, received_at, disposition FROM events
WHERE received_at <= coalesce(:before_at, 9223372036854775807)
  AND (:before_at IS NULL OR received_at < :before_at OR id < :before_id)
ORDER BY received_at DESC, id DESC LIMIT :limit;
