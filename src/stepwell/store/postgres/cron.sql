-- Cron ticks (store/postgres/cron.py): named statements, run inside PostgresStore.fire_cron_tick's transaction.

-- name: fire_cron_tick_register
INSERT INTO cron_schedules (function, schedule, since)
VALUES (%(function)s, %(schedule)s, coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (function, schedule) DO NOTHING;

-- name: fire_cron_tick_advance
-- Compare-and-set on the schedule's row: a concurrent scheduler waits for the row lock, then finds
-- the tick handled and updates nothing.
UPDATE cron_schedules SET last_tick_at = %(tick_at)s
WHERE function = %(function)s AND schedule = %(schedule)s
  AND since < %(tick_at)s AND (last_tick_at IS NULL OR last_tick_at < %(tick_at)s);

-- name: fire_cron_tick_claim
INSERT INTO cron_ticks (function, tick_at, schedule, event_id, fired_at)
VALUES (%(function)s, %(tick_at)s, %(schedule)s, %(event_id)s, coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (function, tick_at) DO NOTHING;

-- name: fire_cron_tick_forget
DELETE FROM cron_ticks WHERE function = %(function)s AND tick_at < %(forget_before)s;
