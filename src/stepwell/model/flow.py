"""Flow-control options of a function: ordering, concurrency, throttle, rate limit, debounce,
batching, priority, idempotency, timeouts and cancellation. Validated when the function is
registered; keys and conditions are CEL expressions over `event`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from stepwell.errors import ConfigurationError
from stepwell.model.durations import Duration, parse_duration
from stepwell.model.expressions import compile_expression
from stepwell.model.function import check_name
from stepwell.model.matching import check_path

DeadLetterPolicy = Literal["skip", "park"]


def _positive_int(value: object, option: str, maximum: int = 1_000_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ConfigurationError(f"{option}: {value!r} must be an int from 1 to {maximum}")
    return value


def _key(expression: str | None, option: str) -> str | None:
    if expression is not None:
        compile_expression(expression, option)
    return expression


def _period(value: Duration, option: str) -> timedelta:
    return parse_duration(value, option=option, allow_zero=False)


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most `limit` runs of the function executing at once, per value of `key` (or in all)."""

    limit: int
    key: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.limit, "Concurrency.limit")
        _key(self.key, "Concurrency.key")


@dataclass(frozen=True, slots=True)
class Throttle:
    """`limit` starts per `period` per key on average, up to `burst` at once; the excess waits (nothing is dropped)."""

    limit: int
    period: Duration
    key: str | None = None
    burst: int | None = None

    def __post_init__(self) -> None:
        _positive_int(self.limit, "Throttle.limit")
        _period(self.period, "Throttle.period")
        _key(self.key, "Throttle.key")
        if self.burst is not None:
            _positive_int(self.burst, "Throttle.burst")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` runs per `period` per key; events beyond it start nothing (their disposition says so)."""

    limit: int
    period: Duration
    key: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.limit, "RateLimit.limit")
        _period(self.period, "RateLimit.period")
        _key(self.key, "RateLimit.key")


@dataclass(frozen=True, slots=True)
class Debounce:
    """One run per key after `period` without new events (with the last event); at most `max_wait` late."""

    period: Duration
    key: str | None = None
    max_wait: Duration | None = None

    def __post_init__(self) -> None:
        period = _period(self.period, "Debounce.period")
        _key(self.key, "Debounce.key")
        if self.max_wait is not None and _period(self.max_wait, "Debounce.max_wait") < period:
            raise ConfigurationError("Debounce.max_wait must be at least the period")


@dataclass(frozen=True, slots=True)
class Batch:
    """Up to `size` events per run (`ctx.events`), or fewer once `timeout` has passed since the first."""

    size: int
    timeout: Duration
    key: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.size, "Batch.size", 10_000)
        _period(self.timeout, "Batch.timeout")
        _key(self.key, "Batch.key")


@dataclass(frozen=True, slots=True)
class CancelOn:
    """An event that cancels a run: named `event`, matching on `match` and/or the CEL condition `if_`."""

    event: str
    match: str | None = None
    if_: str | None = None

    def __post_init__(self) -> None:
        check_name(self.event, "CancelOn.event")
        if self.match is not None:
            check_path(self.match)
        if self.if_ is not None:
            compile_expression(self.if_, "CancelOn.if_")


@dataclass(frozen=True, slots=True)
class FlowOptions:
    ordering_key: str | None = None
    on_dead_letter: DeadLetterPolicy = "skip"
    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: str | None = None
    idempotency: str | None = None
    timeout: timedelta | None = None
    step_timeout: timedelta | None = None
    cancel_on: tuple[CancelOn, ...] = field(default=())

    def __post_init__(self) -> None:
        _key(self.ordering_key, "ordering_key")
        if self.on_dead_letter not in ("skip", "park"):
            raise ConfigurationError(f"on_dead_letter: {self.on_dead_letter!r} must be 'skip' or 'park'")
        if self.on_dead_letter == "park" and self.ordering_key is None:
            raise ConfigurationError("on_dead_letter='park' needs an ordering_key")
        _key(self.priority, "priority")
        _key(self.idempotency, "idempotency")
        for item, kind, name in (
            *((c, Concurrency, "concurrency") for c in self.concurrency),
            (self.throttle, Throttle, "throttle"),
            (self.rate_limit, RateLimit, "rate_limit"),
            (self.debounce, Debounce, "debounce"),
            (self.batch, Batch, "batch"),
            *((c, CancelOn, "cancel_on") for c in self.cancel_on),
        ):
            if item is not None and not isinstance(item, kind):
                raise ConfigurationError(f"{name}: expected stepwell.{kind.__name__}(...), got {item!r}")
        if self.batch is not None and (self.debounce is not None or self.ordering_key is not None):
            raise ConfigurationError("batch cannot be combined with debounce or ordering_key")
        if len(self.concurrency) > 4:
            raise ConfigurationError("concurrency: at most 4 limits per function")
