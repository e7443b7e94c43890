-- Version 4: cron. A schedule is seen once per (function, schedule); each tick is claimed once.

CREATE TABLE cron_schedules (
    function     TEXT NOT NULL,
    schedule     TEXT NOT NULL,      -- '0 3 * * * Europe/Paris': a changed schedule is a new one
    since        INTEGER NOT NULL,   -- first seen by a scheduler: ticks at or before it never fire
    last_tick_at INTEGER,            -- the latest tick this schedule handled: ticks only move forward
    PRIMARY KEY (function, schedule)
) WITHOUT ROWID;

CREATE TABLE cron_ticks (
    function TEXT NOT NULL,
    tick_at  INTEGER NOT NULL,       -- the tick's instant (UTC microseconds)
    schedule TEXT NOT NULL,          -- the schedule that fired it
    event_id TEXT NOT NULL,          -- the stepwell/cron event it stored
    fired_at INTEGER NOT NULL,
    PRIMARY KEY (function, tick_at)  -- exactly one run per tick, however many schedulers ask
) WITHOUT ROWID;
