-- Version 8: push mode. Same table as SQLite's 0008: a registered function with a URL here is pushed;
-- without one it is pulled by workers. Kept beside the registry, not in the definition.

CREATE TABLE push_endpoints (
    app        text NOT NULL,
    name       text NOT NULL,
    url        text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (app, name)
);

-- The dispatcher's circuit breaker, per endpoint URL: while open_until is ahead, runs of the functions
-- pushed there are not claimed and say why ("endpoint ... unavailable until ...").
CREATE TABLE push_circuits (
    url        text PRIMARY KEY,
    open_until timestamptz NOT NULL
);
