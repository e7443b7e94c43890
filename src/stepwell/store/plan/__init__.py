"""The engine's store rules, decided once: pure functions from a snapshot of rows to a change-set.

Each backend locks what a decision needs, reads it into a snapshot, calls the planner, and
writes the change-set back in its own dialect, inside the same transaction. Nothing here does
I/O or reads a clock: time comes in with the snapshot (`at`, the store's now). A rule therefore
has one implementation, tested in memory, and a third backend adds no third copy.

* admission.py: what new runs do at ingest (ordering keys, concurrency slots and cancel_on
  registered, rate limit, idempotency, debounce, batch);
* starts.py: whether picked runs may start now (concurrency slots, throttle);
* lines.py: an ordering key's line when a run joins it, leaves it, is redriven into it,
  or the key is paused, resumed or skipped;
* failures.py: the errors the store itself writes (an expired lease, a run timeout), in one wording.
"""
