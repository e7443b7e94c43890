-- Version 4: cron. Same tables as SQLite's 0004. A schedule is seen once per (function, schedule);
-- each tick is claimed once, through its primary key, by INSERT ... ON CONFLICT DO NOTHING.

CREATE TABLE cron_schedules (
    function     text NOT NULL,
    schedule     text NOT NULL,          -- '0 3 * * * Europe/Paris': a changed schedule is a new one
    since        timestamptz NOT NULL,   -- first seen by a scheduler: ticks at or before it never fire
    last_tick_at timestamptz,            -- the latest tick this schedule handled: ticks only move forward
    PRIMARY KEY (function, schedule)
);

CREATE TABLE cron_ticks (
    function text NOT NULL,
    tick_at  timestamptz NOT NULL,
    schedule text NOT NULL,              -- the schedule that fired it
    event_id text NOT NULL,              -- the stepwell/cron event it stored
    fired_at timestamptz NOT NULL,
    PRIMARY KEY (function, tick_at)      -- exactly one run per tick, however many schedulers ask
);
