"""Which runs an event starts: the registry's triggers, decided before the store writes anything."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from stepwell.model.function import FunctionSpec
from stepwell.model.ids import new_id
from stepwell.store.base import NewRun


def runs_for_event(triggered: Mapping[str, list[FunctionSpec]], event_name: str, now: datetime) -> tuple[NewRun, ...]:
    return tuple(new_run(spec, now) for spec in triggered.get(event_name, ()))


def new_run(
    spec: FunctionSpec,
    now: datetime,
    *,
    input: bytes | None = None,
    input_name: str | None = None,
    replay_of: str | None = None,
) -> NewRun:
    return NewRun(
        id=new_id(now),
        function=spec.name,
        max_attempts=spec.retry.max_attempts,
        on_failure=spec.on_failure,
        input=input,
        input_name=input_name,
        replay_of=replay_of,
    )
