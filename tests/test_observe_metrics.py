"""Metrics read from the registry after a known workload: exact counts, histograms with the right labels."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import stepwell
from stepwell.observe import metrics
from stepwell.store.base import Complete
from tests.conftest import EnvFactory
from tests.observe_helpers import metric_value as value

app = stepwell.App("metrics-test")


@app.function("ok", trigger=stepwell.on_event("job.ok"))
def ok(ctx: stepwell.Context[Any]) -> int:
    ctx.step.run("fetch", lambda: 1)
    ctx.step.run("fetch", lambda: 2)  # a repeat: step label "fetch", not "fetch#2"
    return 1


@app.function("doomed", trigger=stepwell.on_event("job.doomed"), retries=2, backoff=stepwell.Backoff(jitter=0))
def doomed(ctx: stepwell.Context[Any]) -> None:
    raise ValueError("boom")


@app.function("spread", trigger=stepwell.on_event("job.spread"))
def spread(ctx: stepwell.Context[Any]) -> int:
    return ctx.step.fan_out("items", ok, [1, 2, 3]).completed


@pytest.fixture
def registry() -> Iterator[metrics.Metrics]:
    yield metrics.install()


def test_a_known_workload_counts_exactly(registry: metrics.Metrics, test_env: EnvFactory) -> None:
    with test_env(app) as env:
        for _ in range(3):
            env.send("job.ok", {})
        env.send("job.ok", {}, id="same")
        env.send("job.ok", {}, id="same")
        env.send("job.doomed", {})
        env.send("job.nobody", {})
        env.run_until_idle()
    assert value(registry, "stepwell_events_received_total", event="job.ok", disposition="started") == 4
    assert value(registry, "stepwell_events_received_total", event="job.ok", disposition="deduplicated") == 1
    assert value(registry, "stepwell_events_received_total", event="job.nobody", disposition="no_run") == 1
    assert value(registry, "stepwell_runs_created_total", function="ok") == 4
    assert value(registry, "stepwell_runs_started_total", function="ok") == 4
    assert value(registry, "stepwell_runs_started_total", function="doomed") == 3
    assert value(registry, "stepwell_runs_finished_total", function="ok", status="completed") == 4
    assert value(registry, "stepwell_runs_finished_total", function="doomed", status="failed") == 1
    assert value(registry, "stepwell_runs_retried_total", function="doomed") == 2
    assert value(registry, "stepwell_dead_letters_total", function="doomed") == 1
    assert value(registry, "stepwell_run_duration_seconds_count", function="ok", outcome="completed") == 4
    assert value(registry, "stepwell_run_duration_seconds_count", function="doomed", outcome="retried") == 2
    assert value(registry, "stepwell_step_duration_seconds_count", function="ok", step="fetch", status="ok") == 8
    assert value(registry, "stepwell_schedule_to_start_seconds_count", function="ok") == 4
    assert value(registry, "stepwell_schedule_to_start_seconds_count", function="doomed") == 3
    # the retries waited their backoff (1 s, then 2 s) before they were due: not counted as queueing
    assert value(registry, "stepwell_schedule_to_start_seconds_sum", function="doomed") < 0.5


def test_fan_out_children_by_state(registry: metrics.Metrics, test_env: EnvFactory) -> None:
    with test_env(app) as env:
        env.send("job.spread", {})
        env.run_until_idle()
    assert value(registry, "stepwell_fan_out_children_total", function="spread", state="created") == 3
    assert value(registry, "stepwell_fan_out_children_total", function="spread", state="completed") == 3
    assert value(registry, "stepwell_runs_created_total", function="ok") == 3


def test_rescued_leases_are_counted(registry: metrics.Metrics, test_env: EnvFactory) -> None:
    with test_env(app) as env:
        env.send("job.ok", {})
        env.store.claim_runs(worker_id="lost", limit=1, lease=timedelta(seconds=30))
        env.advance(minutes=1)
        assert env.store.rescue_expired_leases() == 1
    assert value(registry, "stepwell_runs_rescued_total") == 1


def test_runs_claimed_with_a_settle_are_counted_as_started(registry: metrics.Metrics, test_env: EnvFactory) -> None:
    """settle_and_claim's claims are observed as claim_runs' are: attempts started, schedule-to-start."""
    lease = timedelta(seconds=30)
    with test_env(app) as env:
        env.send("job.ok", {})
        env.send("job.ok", {})
        [first] = env.store.claim_runs(worker_id="w", limit=1, lease=lease)
        done = env.store.settle_and_claim([Complete(first.lease, b"1")], worker_id="w", limit=10, lease=lease)
        assert done.refused == [] and len(done.claimed) == 1
    assert value(registry, "stepwell_runs_started_total", function="ok") == 2
    assert value(registry, "stepwell_schedule_to_start_seconds_count", function="ok") == 2


def test_labels_are_bounded(registry: metrics.Metrics) -> None:
    labels = [registry.event_names(f"name-{i}") for i in range(metrics.MAX_LABEL_VALUES + 5)]
    assert labels[-1] == metrics.OTHER and labels[0] == "name-0"
    assert len(set(labels)) == metrics.MAX_LABEL_VALUES + 1


def test_render_is_the_exposition_text(registry: metrics.Metrics, test_env: EnvFactory) -> None:
    with test_env(app) as env:
        env.send("job.ok", {})
        env.run_until_idle()
    text = metrics.render().decode()
    assert "# TYPE stepwell_runs_finished_total counter" in text
    assert 'stepwell_runs_finished_total{function="ok",status="completed"} 1.0' in text


def test_disabled_metrics_record_nothing(registry: metrics.Metrics, test_env: EnvFactory) -> None:
    stepwell.observe.configure(metrics=False)
    try:
        with test_env(app) as env:
            env.send("job.ok", {})
            env.run_until_idle()
    finally:
        stepwell.observe.configure(metrics=True)
    assert value(registry, "stepwell_runs_started_total", function="ok") == 0


def test_cheap_histograms_expose_cumulative_le_buckets() -> None:
    from prometheus_client import CollectorRegistry

    from stepwell.observe.cheap import CheapHistogram

    registry = CollectorRegistry()
    histogram = CheapHistogram("demo_seconds", "demo", ["kind"], registry, (0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.child("a").observe(seconds)
    sample = registry.get_sample_value
    assert sample("demo_seconds_bucket", {"kind": "a", "le": "0.1"}) == 2  # 0.1 is <= 0.1
    assert sample("demo_seconds_bucket", {"kind": "a", "le": "1.0"}) == 4
    assert sample("demo_seconds_bucket", {"kind": "a", "le": "+Inf"}) == 5
    assert sample("demo_seconds_count", {"kind": "a"}) == 5 and sample("demo_seconds_sum", {"kind": "a"}) == 8.65
