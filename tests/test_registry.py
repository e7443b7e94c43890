"""The function registry from the app's side: register, route from it, retire, cron without user code.

Producers here are Apps that define no functions: whatever they start comes from the registry.
Every test runs on every backend (`database_url`).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from click.testing import CliRunner

import stepwell
from stepwell.app import open_store
from stepwell.cli import main
from stepwell.clock import VirtualClock
from stepwell.errors import ConfigurationError, RegistryChanged, UnknownFunction
from stepwell.model.ids import new_id
from stepwell.model.records import RunStatus
from stepwell.store.base import NewEvent, NewRun, RunFlow
from tests.conftest import database_url_for


def shop(database_url: str, clock: VirtualClock, *, with_bill: bool = True, retries: int = 3) -> stepwell.App:
    """The consumer app; a new App object per deploy, as a restarted service would have."""
    app = stepwell.App("shop", database_url=database_url, clock=clock)
    app.function(
        "ship", trigger=stepwell.on_event("order.placed"), retries=retries, ordering_key="event.data.customer"
    )(_noop)
    if with_bill:
        app.function("bill", trigger=stepwell.on_event("order.placed"))(_noop)
    return app


def _noop(ctx: Any) -> None:
    return None


def producer(database_url: str, clock: VirtualClock) -> stepwell.App:
    return stepwell.App("checkout", database_url=database_url, clock=clock)


def functions_of(app: stepwell.App, event_id: str) -> list[str]:
    return sorted(run.function for run in app.runs(event_id=event_id))


def test_a_producer_without_functions_starts_nothing_until_a_consumer_registers(
    database_url: str, clock: VirtualClock
) -> None:
    sender = producer(database_url, clock)
    before = sender.send("order.placed", {"customer": "c1"})
    assert functions_of(sender, before) == []
    consumer = shop(database_url, clock)
    change = consumer.register()
    assert change.added == ("bill", "ship")
    after = sender.send("order.placed", {"customer": "c1"})
    assert functions_of(sender, after) == ["bill", "ship"], "a registration refreshes every producer's routing"
    [shipped] = sender.runs(event_id=after, function="ship")
    assert shipped.ordering_key == "c1"
    assert not consumer.register().changed_anything, "registering again is a no-op"


def test_an_app_with_functions_registers_itself_on_its_first_send(database_url: str, clock: VirtualClock) -> None:
    consumer = shop(database_url, clock)
    event_id = consumer.send("order.placed", {"customer": "c1"})
    assert functions_of(consumer, event_id) == ["bill", "ship"]
    assert {(f.app, f.name) for f in consumer.functions()} == {("shop", "bill"), ("shop", "ship")}


def test_re_registering_without_a_function_retires_it_and_its_queued_runs_say_why(
    database_url: str, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    sender = producer(database_url, clock)
    shop(database_url, clock).register()
    first = sender.send("order.placed", {"customer": "c1"})
    [queued_bill] = sender.runs(event_id=first, function="bill")
    assert queued_bill.waiting_reason is None or "no worker serves" not in queued_bill.waiting_reason
    clock.advance(minutes=3)
    with caplog.at_level(logging.WARNING, logger="stepwell.registry"):
        change = shop(database_url, clock, with_bill=False).register()
    assert change.retired == ("bill",)
    assert "no longer serves function bill" in caplog.text
    later = sender.send("order.placed", {"customer": "c2"})  # its routing table predates the retirement
    assert functions_of(sender, later) == ["ship"], "events stop starting a retired function"
    reason = sender.get_run(queued_bill.id).waiting_reason
    assert reason == "no worker serves function bill since 2030-01-01T00:03:00Z"
    [listed] = sender.runs(function="bill")
    assert listed.waiting_reason == reason
    assert sender.get_run(queued_bill.id).status is RunStatus.QUEUED, "a retired function's runs are kept"


def test_a_changed_definition_is_a_new_version_and_routes_at_once(database_url: str, clock: VirtualClock) -> None:
    sender = producer(database_url, clock)
    shop(database_url, clock, retries=3).register()
    sender.send("order.placed", {"customer": "c1"})
    change = shop(database_url, clock, retries=7).register()
    assert change.changed == ("ship",)
    event_id = sender.send("order.placed", {"customer": "c1"})
    [shipped] = sender.runs(event_id=event_id, function="ship")
    assert shipped.max_attempts == 8


def test_several_apps_on_one_database_each_get_their_runs(database_url: str, clock: VirtualClock) -> None:
    shop(database_url, clock).register()
    mail = stepwell.App("mail", database_url=database_url, clock=clock)
    mail.function("notify", trigger=stepwell.on_event("order.placed"))(_noop)
    mail.register()
    sender = producer(database_url, clock)
    event_id = sender.send("order.placed", {"customer": "c1"})
    assert functions_of(sender, event_id) == ["bill", "notify", "ship"]
    store = sender.store
    claimed = store.claim_runs(worker_id="mail", limit=10, lease=timedelta(seconds=30), functions=["notify"])
    assert [c.function for c in claimed] == ["notify"], "a worker claims only the functions its app serves"


def test_enqueue_and_replay_from_a_producer_use_the_registry(database_url: str, clock: VirtualClock) -> None:
    shop(database_url, clock).register()
    sender = producer(database_url, clock)
    run_id = sender.enqueue("ship", {"customer": "c9"})
    assert sender.get_run(run_id).ordering_key == "c9"
    with pytest.raises(UnknownFunction, match="ghost"):
        sender.enqueue("ghost", {})


def test_cron_fires_from_the_registry_in_a_process_without_user_code(database_url: str, clock: VirtualClock) -> None:
    jobs = stepwell.App("jobs", database_url=database_url, clock=clock)
    jobs.function("nightly", trigger=stepwell.cron("0 * * * *"))(_noop)
    jobs.register()
    server = stepwell.App("server", database_url=database_url, clock=clock)
    maintenance = server.maintenance()
    maintenance.tick()  # the schedule counts from here
    assert server.runs(function="nightly") == []
    clock.advance(hours=1)
    maintenance.tick()
    assert maintenance.cron_started == 1
    [run] = server.runs(function="nightly")
    assert run.status is RunStatus.QUEUED


def test_the_cli_syncs_lists_and_sends_without_an_app(database_url: str) -> None:
    runner = CliRunner()
    synced = runner.invoke(
        main, ["registry", "sync", "tests.integration.registry_apps:shop", "--database-url", database_url]
    )
    assert synced.exit_code == 0, synced.output
    assert "added: bill, ship" in synced.output
    again = runner.invoke(
        main, ["registry", "sync", "tests.integration.registry_apps:shop", "--database-url", database_url]
    )
    assert "up to date" in again.output
    listed = runner.invoke(main, ["registry", "ls", "--json", "--database-url", database_url])
    assert listed.exit_code == 0, listed.output
    entries = [orjson.loads(line) for line in listed.output.splitlines()]
    assert sorted((e["app"], e["name"]) for e in entries) == [("shop", "bill"), ("shop", "ship")]
    [ship] = [e for e in entries if e["name"] == "ship"]
    assert ship["definition"]["flow"]["ordering_key"] == "event.data.customer"
    sent = runner.invoke(
        main, ["send", "order.placed", '{"order": 1, "customer": "c"}', "--database-url", database_url]
    )
    assert sent.exit_code == 0, sent.output
    assert "started" in sent.output
    event_id = sent.output.split()[1].rstrip(":")
    reader = stepwell.App("reader", database_url=database_url)
    assert functions_of(reader, event_id) == ["ship"]
    [run] = reader.runs(event_id=event_id)
    replayed = runner.invoke(main, ["runs", "replay", run.id, "--database-url", database_url])
    assert replayed.exit_code == 0, replayed.output
    paused = runner.invoke(main, ["keys", "pause", "ship", "c", "--database-url", database_url])
    assert paused.exit_code == 0, paused.output
    unknown = runner.invoke(main, ["keys", "pause", "ghost", "c", "--database-url", database_url])
    assert unknown.exit_code == 1 and "no function 'ghost'" in unknown.output
    stopped = runner.invoke(main, ["functions", "pause", "ship", "--database-url", database_url])
    assert stopped.exit_code == 0 and "ship: paused since" in stopped.output, stopped.output
    listed = runner.invoke(main, ["registry", "ls", "--json", "--database-url", database_url])
    assert {e["name"]: e["paused_at"] for e in map(orjson.loads, listed.output.splitlines())}["ship"] is not None
    ghost = runner.invoke(main, ["functions", "pause", "ghost", "--database-url", database_url])
    assert ghost.exit_code == 1 and "no function 'ghost'" in ghost.output
    resumed = runner.invoke(main, ["functions", "resume", "ship", "--database-url", database_url])
    assert resumed.exit_code == 0 and "ship: resumed" in resumed.output, resumed.output
    assert "new run" in replayed.output  # (deduplicated by ship's idempotency key: the original is the owner)
    reader.close()


def test_a_function_condition_decides_from_the_registry_which_events_start_it(
    database_url: str, clock: VirtualClock
) -> None:
    vip = stepwell.App("vip", database_url=database_url, clock=clock)
    vip.function("welcome-vip", trigger=stepwell.on_event("user.created"), if_="event.data.tier == 'gold'")(_noop)
    vip.register()
    sender = producer(database_url, clock)
    gold = sender.send("user.created", {"tier": "gold"})
    plain = sender.send("user.created", {"tier": "basic"})
    unknown = sender.send("user.created", {})
    assert functions_of(sender, gold) == ["welcome-vip"]
    assert functions_of(sender, plain) == functions_of(sender, unknown) == []
    assert sender.event(plain).disposition.value == "no_match"
    with pytest.raises(ConfigurationError, match="if_"):
        vip.function("broken", trigger=stepwell.on_event("user.created"), if_="event.data.(")


@pytest.mark.postgres
def test_a_send_in_the_callers_transaction_routes_again_after_a_registration(
    tmp_path: Path, clock: VirtualClock
) -> None:
    url = database_url_for("postgres", tmp_path)
    shop(url, clock, with_bill=False).register()
    sender = producer(url, clock)
    sender.send("order.placed", {"customer": "c0"})  # its routing table: ship only
    shop(url, clock).register()  # bill is added meanwhile
    with psycopg.connect(url) as conn:
        event_id = sender.send("order.placed", {"customer": "c1"}, connection=conn)
        conn.execute("SELECT 1")  # the caller's transaction is still usable: the stale check raised nothing in it
    assert functions_of(sender, event_id) == ["bill", "ship"]


def test_a_stale_send_with_flow_control_routes_again(database_url: str, clock: VirtualClock) -> None:
    sender = producer(database_url, clock)
    shop(database_url, clock, with_bill=False).register()
    sender.send("order.placed", {"customer": "c0"})
    shop(database_url, clock).register()
    batch = [{"name": "order.placed", "data": {"customer": f"c{i}"}} for i in range(3)]
    event_ids = sender.send(batch)  # ship has an ordering key: the transactional path
    assert [functions_of(sender, event_id) for event_id in event_ids] == [["bill", "ship"]] * 3


@pytest.mark.postgres
@pytest.mark.parametrize("flowed", [False, True])
def test_an_ingest_waits_for_a_registration_in_progress_and_sees_its_generation(
    tmp_path: Path, clock: VirtualClock, flowed: bool
) -> None:
    """The generation is read after the shared lock is granted, not from a snapshot taken before the wait."""
    url = database_url_for("postgres", tmp_path)
    store = open_store(url, clock)
    store.migrate()
    now = clock.now()
    flow = RunFlow(ordering_key="k") if flowed else None
    new_event = NewEvent(new_id(now), "order.placed", b"{}", None, (NewRun(new_id(now), "ship", 1, flow=flow),))
    outcome: list[object] = []
    with psycopg.connect(url) as registering:  # a registration in progress, holding the lock exclusively
        registering.execute("SELECT pg_advisory_xact_lock(1400073552, hashtext(coalesce(current_schema(), '')))")
        registering.execute("UPDATE registry_state SET generation = generation + 1")

        def send() -> None:
            try:
                outcome.append(store.append_events([new_event], registry_generation=0))
            except RegistryChanged as err:
                outcome.append(err.generation)

        sender = threading.Thread(target=send)
        sender.start()
        sender.join(0.5)
        assert sender.is_alive(), "the ingest waits for the registration's lock"
    sender.join(10)
    assert outcome == [1], "refused with the generation the registration committed"
    assert store.get_event(new_event.id) is None
    store.close()


def test_the_two_services_example_runs(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from examples import two_services

    started = two_services.demo(database_url)
    assert started == {
        "order 1": ["confirm", "invoice", "ship"],
        "order 2": ["invoice", "ship"],
        "order 3": ["ship"],
    }
    assert "redeploy without invoice: ('invoice',)" in capsys.readouterr().out


@pytest.mark.postgres
def test_a_registration_waits_for_an_open_transactional_send_without_stalling_other_sends(
    tmp_path: Path, clock: VirtualClock
) -> None:
    url = database_url_for("postgres", tmp_path)
    shop(url, clock, with_bill=False).register()
    sender = producer(url, clock)
    registered: list[object] = []
    with psycopg.connect(url) as open_send:  # a transactional send whose caller has not committed yet
        sender.send("order.placed", {"customer": "c0"}, connection=open_send)
        registering = threading.Thread(target=lambda: registered.append(shop(url, clock).register()))
        registering.start()
        registering.join(0.5)
        assert registering.is_alive(), "the registration waits for the open transaction's shared lock"
        done = threading.Event()
        other = threading.Thread(target=lambda: (sender.send("order.placed", {"customer": "c1"}), done.set()))
        other.start()
        assert done.wait(5), "another send is not queued behind the waiting registration"
        assert not registered
    registering.join(10)
    [change] = registered
    assert change.added == ("bill",)  # type: ignore[attr-defined]
