"""A SQLite writer gets its turn while another process writes back to back (store/sqlite/writelock.py).

The other process holds the write lock 3 ms at a time and lets go for 0.5 ms, as a busy worker
does. SQLite's own busy handler, which only looks again every 100 ms after a while, seldom hits
those gaps: with it, one write in a hundred here waited more than 1.5 s, the longest 3.6 s (a
fleet's heartbeats lapsed that way in CI); with writelock.py the longest waited 50 ms. Every one
of 200 writes must get through within a 1-second timeout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson

from stepwell.clock import SystemClock
from stepwell.store.base import NewEvent
from stepwell.store.sqlite.store import SQLiteStore

HOG = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE IF NOT EXISTS hog (n INTEGER)")
    conn.execute("INSERT INTO hog VALUES (1)")
    time.sleep(0.003)
    conn.execute("COMMIT")
    time.sleep(0.0005)
"""
WRITES = 200
HOGS = 1


def test_a_writer_gets_the_lock_between_another_process_s_back_to_back_transactions(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "stepwell.db", clock=SystemClock(), busy_timeout_ms=1_000)
    store.migrate()
    hog = subprocess.Popen([sys.executable, "-c", HOG, str(store.path), "20"], stdout=subprocess.PIPE, text=True)
    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # the hog is writing
        for n in range(WRITES):
            event = NewEvent(f"tick-{n}", "tick", orjson.dumps({"n": n}), None, ())
            store.append_events([event])  # StoreUnavailable after 1 s locked
            time.sleep(0.001)  # a worker's own work between two writes: the hog takes the lock back
        assert hog.poll() is None, "the hog was still writing the whole time"
    finally:
        hog.kill()
        hog.wait(timeout=10)
        store.close()
    reopened = SQLiteStore(tmp_path / "stepwell.db", clock=SystemClock())
    try:
        assert len(reopened.list_recent_events(limit=WRITES)) == WRITES
    finally:
        reopened.close()
