"""Queued runs of a pushed function whose endpoint's circuit is open say so in `waiting_reason`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from stepwell.model.records import Run, RunStatus
from stepwell.model.schedule import iso_utc
from stepwell.store.base import Store


def circuit_reason(url: str, until: datetime) -> str:
    return f"endpoint {url} unavailable until {iso_utc(until)}"


def explain_circuits(runs: Sequence[Run], store: Store, now: datetime) -> list[Run]:
    """Two small reads, and only when a queued run without a reason is among `runs`."""
    if not any(_explainable(run) for run in runs):
        return list(runs)
    circuits = {url: until for url, until in store.push_circuits().items() if until > now}
    if not circuits:
        return list(runs)
    endpoints = store.push_endpoints()
    explained = []
    for run in runs:
        url = endpoints.get(run.function)
        if _explainable(run) and url in circuits:
            run = replace(run, waiting_reason=circuit_reason(url, circuits[url]))
        explained.append(run)
    return explained


def _explainable(run: Run) -> bool:
    """Queued, and not held back by something more specific than "ready" (flow control says why itself)."""
    reason = run.waiting_reason
    return run.status is RunStatus.QUEUED and (reason is None or reason.startswith("ready"))
