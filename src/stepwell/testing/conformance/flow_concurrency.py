"""Store conformance: flow control under many concurrent workers. Runs on every backend.

Eight threads claim and settle runs of a concurrency-limited function, of ordered keys, and of
ordered keys under a shared concurrency limit, all at once, with retries, releases and dead
letters mixed in. A history of what each worker saw is checked afterwards: a worker records a
start after its claim returned and an end before it settles, so each recorded interval lies
inside the store's own, and an overlap in the history is an overlap in the store.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import orjson

from stepwell.clock import VirtualClock
from stepwell.model.ids import new_id
from stepwell.model.records import ErrorInfo, FailureReason
from stepwell.store.base import (
    ClaimedRun,
    Complete,
    Fail,
    NewEvent,
    NewRun,
    Release,
    Retry,
    RunFilter,
    RunFlow,
    Settlement,
    SlotClaim,
    Store,
)

LEASE = timedelta(minutes=5)
WORKERS = 8
LIMITED, LIMIT = 30, 3  # runs of "limited", at most LIMIT at once
ORDERED_KEYS, PER_KEY = 2, 40  # runs of "ordered", one at a time per key, in order
MIXED_KEYS, PER_MIXED_KEY, MIXED_LIMIT = 3, 15, 2  # "mixed": ordered keys sharing one concurrency limit


@dataclass
class History:
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (run id, "start" | "end", whether an end is for good), in real-time order
    entries: list[tuple[str, str, bool]] = field(default_factory=list)
    ended: Counter[str] = field(default_factory=Counter)  # runs settled for good (completed or failed)
    errors: list[BaseException] = field(default_factory=list)  # what stopped a worker

    def record(self, run_id: str, kind: str, for_good: bool = False) -> None:
        with self.lock:
            self.entries.append((run_id, kind, for_good))


def _plan(clock: VirtualClock) -> list[tuple[NewRun, str | None, int]]:
    """Every run, the groups interleaved, each key's runs in their order: (run, ordering key, place in its line)."""
    plan: list[tuple[str, RunFlow, str | None]] = []
    plan += [("limited", RunFlow(slots=(SlotClaim("limited#c0", "*", LIMIT),)), None)] * LIMITED
    for key in range(ORDERED_KEYS):
        plan += [("ordered", RunFlow(ordering_key=f"k{key}"), f"k{key}")] * PER_KEY
    for key in range(MIXED_KEYS):
        flow = RunFlow(ordering_key=f"m{key}", slots=(SlotClaim("mixed#c0", "*", MIXED_LIMIT),))
        plan += [("mixed", flow, f"m{key}")] * PER_MIXED_KEY
    random.Random(7).shuffle(plan)
    places: Counter[str | None] = Counter()
    runs = []
    for function, flow, line in plan:
        runs.append((NewRun(new_id(clock.now()), function, max_attempts=100, flow=flow), line, places[line]))
        places[line] += 1
    return runs


def _send(store: Store, clock: VirtualClock, runs: list[tuple[NewRun, str | None, int]], seed: int) -> None:
    rng = random.Random(seed)
    for run, key, _ in runs:
        store.append_events([NewEvent(new_id(clock.now()), "job", orjson.dumps({"key": key}), None, (run,))])
        time.sleep(rng.uniform(0, 0.002))


def _producer(key: str | None) -> int:
    """Which of the two producers sends the later runs of a key: always the same one, so each key's order is known."""
    return sum(map(ord, key or "")) % 2


def _work(store: Store, history: History, total: int, seed: int, deadline: float) -> None:
    try:
        _work_until_done(store, history, total, seed, deadline)
    except BaseException as err:
        history.errors.append(err)
        raise


def _work_until_done(store: Store, history: History, total: int, seed: int, deadline: float) -> None:
    rng = random.Random(seed)
    while history.ended.total() < total and time.monotonic() < deadline and not history.errors:
        claimed = store.claim_runs(worker_id=f"w{seed}", limit=rng.randint(1, 3), lease=LEASE)
        if not claimed:
            time.sleep(0.001)
            continue
        for run in claimed:
            history.record(run.run_id, "start")
        time.sleep(rng.uniform(0, 0.003))  # the runs are in progress: give the other workers time to overlap them
        for run in claimed:
            outcome = rng.choices(["complete", "retry", "release", "interrupted", "fail"], [70, 15, 5, 5, 5])[0]
            _finish(store, history, run, outcome)


def _finish(store: Store, history: History, run: ClaimedRun, outcome: str) -> None:
    history.record(run.run_id, "end", outcome in ("complete", "fail"))
    if outcome == "release":
        assert store.release_runs([run.lease]) == 1
        return
    error = ErrorInfo("E", "boom")
    settlements: dict[str, Settlement] = {
        "complete": Complete(run.lease, b"1"),
        "retry": Retry(run.lease, error, timedelta(0)),
        "fail": Fail(run.lease, error, FailureReason.NON_RETRIABLE),
        "interrupted": Release(run.lease),
    }
    settlement = settlements[outcome]
    assert store.settle_runs([settlement]) == [], "no lease is lost: nothing expires in this test"
    if outcome in ("complete", "fail"):
        with history.lock:
            history.ended[run.run_id] += 1


def test_claim_runs_limits_and_ordered_keys_hold_under_eight_concurrent_workers(
    store: Store, clock: VirtualClock
) -> None:
    """A quarter of the runs are queued first; two producers send the rest while the workers run, each
    producer owning some keys, so that new runs join lines whose heads are finishing."""
    plan = _plan(clock)
    runs = {run.id: (run.function, key, place) for run, key, place in plan}
    _send(store, clock, plan[: len(plan) // 4], seed=0)
    later = plan[len(plan) // 4 :]
    producers = [
        threading.Thread(target=_send, args=(store, clock, [r for r in later if _producer(r[1]) == side], side))
        for side in (0, 1)
    ]
    history = History()
    deadline = time.monotonic() + 120
    workers = [threading.Thread(target=_work, args=(store, history, len(runs), seed, deadline)) for seed in range(8)]
    for thread in producers + workers:
        thread.start()
    for thread in producers + workers:
        thread.join()
    assert not history.errors, f"a worker failed: {history.errors[0]!r}"

    unfinished = [r for r in store.list_runs(RunFilter(limit=1000)) if not r.status.is_terminal]
    why = [(r.id, r.function, r.status.value, getattr(store.get_run(r.id), "waiting_reason", None)) for r in unfinished]
    assert not unfinished, f"runs that never ended (a lost wake-up?): {why[:10]}"
    assert set(history.ended) == set(runs) and set(history.ended.values()) == {1}, "every run ends exactly once"
    _check(history, runs)


def _check(history: History, runs: dict[str, tuple[str, str | None, int]]) -> None:
    """Replay the history: limits never exceeded; per key, one run at a time, in the order sent."""
    in_flight: dict[str, set[str]] = defaultdict(set)  # a limit or a key -> runs in progress
    next_place: Counter[str | None] = Counter()  # key -> place in line of the only run that may start
    starts = 0
    for run_id, kind, for_good in history.entries:
        function, key, place = runs[run_id]
        groups = {"limited": ["limited"], "ordered": [f"key {key}"], "mixed": ["mixed", f"key {key}"]}[function]
        for group in groups:
            (in_flight[group].add if kind == "start" else in_flight[group].discard)(run_id)
        if kind == "end":
            if key is not None and for_good:
                next_place[key] = place + 1
            continue
        starts += 1
        assert len(in_flight["limited"]) <= LIMIT, f"limited exceeds {LIMIT}: {sorted(in_flight['limited'])}"
        assert len(in_flight["mixed"]) <= MIXED_LIMIT, f"mixed exceeds {MIXED_LIMIT}: {sorted(in_flight['mixed'])}"
        if key is not None:
            assert in_flight[f"key {key}"] == {run_id}, f"runs of key {key} overlap: {sorted(in_flight[f'key {key}'])}"
            assert place == next_place[key], f"#{place} of key {key} started when #{next_place[key]} was due"
    assert starts >= len(runs)
