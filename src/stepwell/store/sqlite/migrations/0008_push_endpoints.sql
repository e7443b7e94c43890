-- Version 8: push mode. A registered function with a URL here is pushed (the server's dispatcher POSTs
-- its runs to the URL); without one it is pulled by workers. Kept beside the registry, not in the
-- definition: a worker's registration of the same app neither sets nor clears a URL.

CREATE TABLE push_endpoints (
    app        TEXT NOT NULL,
    name       TEXT NOT NULL,
    url        TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app, name)
) WITHOUT ROWID;

-- The dispatcher's circuit breaker, per endpoint URL: while open_until is ahead, runs of the functions
-- pushed there are not claimed and say why ("endpoint ... unavailable until ...").
CREATE TABLE push_circuits (
    url        TEXT PRIMARY KEY,
    open_until INTEGER NOT NULL
) WITHOUT ROWID;
