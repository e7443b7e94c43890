-- Cron ticks (store/sqlite/cron.py): named statements, run inside SQLiteStore.fire_cron_tick's transaction.

-- name: fire_cron_tick_register
INSERT INTO cron_schedules (function, schedule, since)
VALUES (:function, :schedule, :now)
ON CONFLICT (function, schedule) DO NOTHING;

-- name: fire_cron_tick_advance
-- Compare-and-set: a tick after the schedule was first seen and after the last tick it handled.
UPDATE cron_schedules SET last_tick_at = :tick_at
WHERE function = :function AND schedule = :schedule
  AND since < :tick_at AND (last_tick_at IS NULL OR last_tick_at < :tick_at);

-- name: fire_cron_tick_claim
INSERT INTO cron_ticks (function, tick_at, schedule, event_id, fired_at)
VALUES (:function, :tick_at, :schedule, :event_id, :now)
ON CONFLICT (function, tick_at) DO NOTHING;

-- name: fire_cron_tick_forget
DELETE FROM cron_ticks WHERE function = :function AND tick_at < :forget_before;
