"""A registered function's specification: name, triggers, retry policy, failure handler."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stepwell.errors import ConfigurationError
from stepwell.model.retry import RetryPolicy
from stepwell.model.schedule import Cron

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$")


@dataclass(frozen=True, slots=True)
class OnEvent:
    """Start a run for every event with this name."""

    event: str

    def __post_init__(self) -> None:
        check_name(self.event, "on_event")


Trigger = OnEvent | Cron


def on_event(event: str) -> OnEvent:
    return OnEvent(event)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    handler: Callable[..., Any]
    is_async: bool
    triggers: tuple[Trigger, ...]
    retry: RetryPolicy
    on_failure: str | None = None  # the name of the failure-handler function, registered beside it
    flow: Any = None  # model.flow.FlowOptions, or None when the function uses no flow control
    condition: str | None = None  # CEL over `event`: an event starts the function only when it holds


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"{what}: {name!r} is not a valid name; use 1-200 characters from letters, digits and _ . : / -"
            " starting with a letter or digit"
        )
    return name
