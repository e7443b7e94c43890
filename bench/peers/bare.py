"""The floor: a bare psycopg loop doing the minimal claim/ack cycle, in batches, in this process."""

from __future__ import annotations

import time

from bench.common import pg_database

SCHEMA = """
CREATE TABLE bare_jobs (
    id bigserial PRIMARY KEY,
    status smallint NOT NULL DEFAULT 0,
    payload jsonb,
    taken_at timestamptz
);
CREATE INDEX bare_jobs_ready ON bare_jobs (id) WHERE status = 0;
"""
CLAIM = """
UPDATE bare_jobs SET status = 1, taken_at = now()
WHERE id IN (SELECT id FROM bare_jobs WHERE status = 0 ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id, payload
"""
ACK = "DELETE FROM bare_jobs WHERE id = ANY(%s)"


def bare_psycopg(n: int, batch: int) -> float:
    """Claim `batch` jobs (one transaction), ack them by deleting (another), until none is left; jobs/s."""
    import psycopg

    with pg_database("bare") as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(
            "INSERT INTO bare_jobs (payload) SELECT jsonb_build_object('i', i) FROM generate_series(1, %s) AS i",
            (n,),
        )
        conn.execute("VACUUM ANALYZE bare_jobs")
        done = 0
        begun = time.perf_counter()
        while True:
            rows = conn.execute(CLAIM, (batch,), prepare=True).fetchall()
            if not rows:
                break
            conn.execute(ACK, ([row[0] for row in rows],), prepare=True)
            done += len(rows)
        seconds = time.perf_counter() - begun
    assert done == n, f"bare loop drained {done} of {n}"
    return n / seconds
