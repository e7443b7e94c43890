-- Version 15: pausing a whole function. A row here holds every run of the function back from
-- claims (pull workers and the push dispatcher alike) until it is deleted; ingest goes on as
-- before, so the runs of events sent meanwhile wait. Keyed by name, as runs are: the pause
-- outlives re-registrations and a move of the name to another app.

CREATE TABLE function_pauses (
    function  TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
) WITHOUT ROWID;
