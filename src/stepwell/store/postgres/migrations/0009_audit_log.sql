-- Version 9: the audit log of operator actions (the dashboard writes one row per action). Same table as SQLite's 0009.

CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    actor_id   text NOT NULL,
    actor_name text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    detail     text NOT NULL
);
