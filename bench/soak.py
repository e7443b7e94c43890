"""`python -m bench.soak`: a mixed load with periodic faults for a configurable time, then the checkers.

Worker processes of `tests/faults/faults_app.py` run jobs of three steps, ordered keys, a
concurrency limit, and runs that sleep, fan out, wait and reduce, while a load thread sends
events at a steady rate (every call logged in the history) and a seeded plan injects a fault
every few seconds: a worker SIGKILLed (and replaced), a worker SIGSTOPped past its lease, and on
PostgreSQL the server crashed (`-m immediate`) and every connection terminated, on a throwaway
cluster of the soak's own. Push mode (on unless --no-push): one event in six starts a job of three
steps served by a web app process (FastAPI under uvicorn on loopback, through `app.asgi()`) that a
push dispatcher process delivers to, both of tests/faults/push.py; the faults then include the web
app SIGKILLed (and started again after a pause) and the dispatcher SIGKILLed (and started again).
At the end, once the queue drained, the checkers of tests/faults report lost, unexpected and
duplicated events, completed-step re-executions, superseded attempts, FIFO and limit violations
and stale leases (the pushed runs included), and the slowest recovery observed: the seconds from
a fault until every run that was in flight at that moment had completed.

    python -m bench.soak --seconds 600 --backend postgres --fault-every 10 [--seed N] [--no-push]

Exit status 1 when a checker found a problem. Figures from a loaded machine mean nothing: run it
on a quiet one.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.faults import ledger
from tests.faults.checkers import check
from tests.faults.faults_app import LIMIT, PUSHED_FUNCTION, build_app
from tests.faults.history import History
from tests.faults.ledger import Execution
from tests.faults.load import Load
from tests.faults.procs import FaultWorkers
from tests.faults.push import PushProcesses
from tests.integration.fleet import wait_drained
from tests.pg_cluster import ThrowawayCluster

import stepwell

LEASE = 2.0


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at: float  # unix time the fault began
    lasted: float
    killed: int | None = None  # the pid of a SIGKILLed process


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float
    backend: str
    fault_every: float
    workers: int
    rate: float
    seed: int
    push: bool = True
    plan: tuple[str, ...] = ()  # fault kinds in this order, cycling, instead of the seeded choice


@contextlib.contextmanager
def database(backend: str, folder: Path) -> Iterator[tuple[str, ThrowawayCluster | None]]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'soak.db'}", None
        return
    with ThrowawayCluster() as cluster:
        yield cluster.schema_url(), cluster


def fault_kinds(cluster: ThrowawayCluster | None, push: PushProcesses | None) -> list[str]:
    kinds = ["kill", "pause"] + (["pg-crash", "terminate"] if cluster is not None else [])
    return kinds + (["web-kill", "dispatcher-kill"] if push is not None else [])


def inject(
    rng: random.Random,
    kind: str,
    workers: FaultWorkers,
    cluster: ThrowawayCluster | None,
    push: PushProcesses | None,
) -> Fault:
    alive = [w for w in workers.started if w.alive()]
    began = time.time()
    killed = None
    if kind == "kill":
        victim = rng.choice(alive)
        victim.kill()
        killed = victim.pid
        workers.start(lease=LEASE, concurrency=3, ready=False)
    elif kind == "pause":
        victim = rng.choice(alive)
        victim.signal(signal.SIGSTOP)
        time.sleep(rng.uniform(0.2, 2 * LEASE))
        victim.signal(signal.SIGCONT)
    elif kind == "web-kill":  # mid-request: the step in flight fails its attempt, and is retried
        assert push is not None
        killed = push.kill_web()
        time.sleep(rng.uniform(0.2, 2.0))  # meanwhile the dispatcher's connections are refused
        push.start_web()
    elif kind == "dispatcher-kill":  # its leases expire and are rescued; a new dispatcher takes over
        assert push is not None
        killed = push.kill_dispatcher()
        time.sleep(rng.uniform(0.0, 0.5))
        push.start_dispatcher()
    elif kind == "pg-crash":
        assert cluster is not None
        cluster.restart("immediate", down_for=rng.uniform(0.2, 3.0))
    else:
        assert cluster is not None
        cluster.terminate_all()
    return Fault(kind, began, time.time() - began, killed)


def recoveries(faults: list[Fault], executions: list[Execution], ended: dict[str, float]) -> list[tuple[Fault, float]]:
    """Per fault: seconds from its start until every run in flight then (begun, not ended) completed."""
    found = []
    for fault in faults:
        begun = {e.run for e in executions if e.phase == "start" and e.t <= fault.at}
        done = {e.run for e in executions if e.phase == "end" and e.t <= fault.at}
        in_flight = [run for run in begun - done if run in ended]
        if in_flight:
            found.append((fault, max(ended[run] for run in in_flight) - fault.at))
    return found


def soak(settings: Settings) -> int:
    rng = random.Random(settings.seed)
    print(
        f"# soak: {settings.seconds:g}s on {settings.backend}, a fault every {settings.fault_every:g}s, "
        f"{settings.workers} workers, {settings.rate:g} events/s, push mode {'on' if settings.push else 'off'}, "
        f"seed {settings.seed}"
    )
    with tempfile.TemporaryDirectory(prefix="stepwell-soak-") as tmp:
        folder = Path(tmp)
        with database(settings.backend, folder) as (url, cluster):
            client = build_app(url)
            client.store  # the schema, before the workers start  # noqa: B018
            history, ledger_path = History(folder / "history.jsonl"), folder / "ledger.jsonl"
            workers = FaultWorkers(url, ledger_path, folder)
            push = PushProcesses(url, ledger_path, folder, lease=LEASE) if settings.push else None
            try:
                if push is not None:  # registered before the workers start, so that they leave it to push
                    push.start_web()
                    push.start_dispatcher()
                    push.wait_registered(client)
                for _ in range(settings.workers):
                    workers.start(lease=LEASE, concurrency=3, ready=False)
                for worker in workers.started:
                    worker.wait_ready(timeout=60)
                kinds = fault_kinds(cluster, push)
                faults: list[Fault] = []
                with Load(client, history, rate=settings.rate, scale=0.5, push=push is not None) as load:
                    ends = time.monotonic() + settings.seconds
                    while time.monotonic() < ends:
                        time.sleep(min(settings.fault_every, max(ends - time.monotonic(), 0)))
                        if time.monotonic() < ends:
                            planned = settings.plan[len(faults) % len(settings.plan)] if settings.plan else None
                            kind = planned if planned in kinds else rng.choice(kinds)
                            faults.append(inject(rng, kind, workers, cluster, push))
                wait_drained(client, timeout=120)
                runs = [client.get_run(run.id) for run in client.runs(limit=1_000_000)]
                executions = ledger.read(ledger_path)
                report = check(history.ops(), executions, runs, limits={"limited": LIMIT}, database_url=url)
                ended = {run.id: run.ended_at.timestamp() for run in runs if run.ended_at is not None}
                slowest = max(recoveries(faults, executions, ended), key=lambda found: found[1], default=None)
            finally:
                workers.stop_all()
                if push is not None:
                    push.stop_all()
                client.close()
    counted = {kind: sum(1 for f in faults if f.kind == kind) for kind in sorted({f.kind for f in faults})}
    print(f"events sent        {load.sent}")
    print(f"faults             {len(faults)} {counted}")
    print(f"checks             {report.counts}")
    if push is not None:
        pushed = {run.id: run for run in runs if run.function == PUSHED_FUNCTION}
        steps = sum(1 for e in executions if e.run in pushed and e.phase == "start")
        done = sum(1 for run in pushed.values() if run.status == stepwell.RunStatus.COMPLETED)
        retried = sum(1 for run in pushed.values() if run.attempt > 1)
        print(f"pushed runs        {len(pushed)} ({done} completed, {retried} retried, {steps} step executions)")
    print(f"max concurrency    {report.concurrency} (limit {LIMIT})")
    if slowest is not None:
        print(f"slowest recovery   {slowest[1]:.2f}s after a {slowest[0].kind} (lasting {slowest[0].lasted:.2f}s)")
    else:
        print("slowest recovery   none measured (no fault found a run in flight)")
    not_completed = sum(1 for run in runs if run.status != stepwell.RunStatus.COMPLETED)
    problems = report.problems() + ([f"{not_completed} runs not completed"] if not_completed else [])
    problems += [f"the load met errors the history could not classify: {load.errors[:3]}"] if load.errors else []
    if push is not None and not pushed:
        problems.append("push mode on, yet no pushed run")
    print(f"problems           {problems or 'none'}")
    return 1 if problems else 0


def parse(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--fault-every", type=float, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20, help="events per second")
    parser.add_argument("--seed", type=int, default=None, help="replay a soak's fault plan")
    parser.add_argument(
        "--push",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a pushed function served by a web app process, and its faults (default: on)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000_007
    return Settings(args.seconds, args.backend, args.fault_every, args.workers, args.rate, seed, args.push)


def quick(_: bool) -> None:
    """`python -m bench soak --quick`: a few seconds on SQLite, push mode on, for the smoke test: SIGKILLed,
    the push dispatcher, a worker, then the web app (whose restart takes longest)."""
    plan = ("dispatcher-kill", "kill", "web-kill")
    code = soak(Settings(seconds=4, backend="sqlite", fault_every=1.0, workers=2, rate=10, seed=1, plan=plan))
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    sys.exit(soak(parse(None)))
