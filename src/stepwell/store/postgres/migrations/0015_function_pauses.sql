-- Version 15: pausing a whole function. Same table as SQLite's 0015. A row here holds every run
-- of the function back from claims (pull workers and the push dispatcher alike) until it is
-- deleted; ingest goes on as before, so the runs of events sent meanwhile wait. Keyed by name, as
-- runs are: the pause outlives re-registrations and a move of the name to another app.

CREATE TABLE function_pauses (
    function  text PRIMARY KEY,
    paused_at timestamptz NOT NULL
);
