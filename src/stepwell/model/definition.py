"""A function's definition as data: what a process that never imports the user's code needs to route.

An app writes one `FunctionDefinition` per function into the store's registry when it starts
(`App.register()`); every producer (`app.send` in another service, `stepwell send`, the HTTP API)
reads the registry back and decides an event's runs from it. So the definition holds everything
that decides *which* runs an event starts and *how* they flow (triggers, retries, every flow-control
option with its CEL expressions) but no Python object: the handler stays in the worker.

The document is plain JSON with durations in integer microseconds, so that the same definition
written two ways ('10m' or 600) is one document, and `version` (a SHA-256 of the canonical
document) changes exactly when the definition does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from stepwell.errors import ConfigurationError
from stepwell.model.durations import Duration, parse_duration
from stepwell.model.expressions import compile_expression
from stepwell.model.flow import Batch, CancelOn, Concurrency, Debounce, FlowOptions, RateLimit, Throttle
from stepwell.model.function import FunctionSpec, OnEvent, check_name
from stepwell.model.retry import Backoff, RetryPolicy
from stepwell.model.schedule import Cron

FORMAT = 1  # the document's layout; a reader refuses a format it does not know instead of guessing

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FunctionDefinition:
    """One function of one app, as stored in the registry. Routing reads `name`, `retry`, `on_failure`, `flow`."""

    app: str
    name: str
    events: tuple[str, ...] = ()
    crons: tuple[Cron, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    on_failure: str | None = None
    flow: FlowOptions | None = None
    condition: str | None = None  # `if_`: CEL over `event`; the function starts only for events where it holds

    def __post_init__(self) -> None:
        check_name(self.app, "app name")
        check_name(self.name, "function name")
        if self.condition is not None:
            compile_expression(self.condition, "if_")

    @property
    def document(self) -> Document:
        """The canonical JSON document (sorted triggers, microsecond durations)."""
        return {
            "format": FORMAT,
            "app": self.app,
            "name": self.name,
            "events": sorted(set(self.events)),
            "crons": sorted(({"cron": c.expression, "tz": c.tz} for c in set(self.crons)), key=_cron_order),
            "retries": self.retry.retries,
            "backoff": _backoff_document(self.retry.backoff),
            "on_failure": self.on_failure,
            "if": self.condition,
            "flow": None if self.flow is None else _flow_document(self.flow),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.document, option=orjson.OPT_SORT_KEYS)

    @property
    def version(self) -> str:
        """A stable hash of the definition: equal definitions share it, any change gives a new one."""
        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any]) -> FunctionDefinition:
        """Rebuild (and re-validate: CEL compiles, names check) a stored definition; ConfigurationError if bad."""
        try:
            doc = raw if isinstance(raw, Mapping) else orjson.loads(raw)
            if doc.get("format") != FORMAT:
                raise ConfigurationError(
                    f"registry: definition format {doc.get('format')!r} is not {FORMAT}; "
                    "upgrade stepwell in this process to read what a newer one registered"
                )
            return cls(
                app=doc["app"],
                name=doc["name"],
                events=tuple(doc["events"]),
                crons=tuple(Cron(c["cron"], c["tz"]) for c in doc["crons"]),
                retry=RetryPolicy(doc["retries"], _backoff(doc["backoff"])),
                on_failure=doc["on_failure"],
                flow=None if doc["flow"] is None else _flow(doc["flow"]),
                condition=doc["if"],
            )
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise ConfigurationError(
                f"registry: unreadable function definition ({type(err).__name__}: {err})"
            ) from None


def definition_of(app: str, spec: FunctionSpec) -> FunctionDefinition:
    """What the registry stores for a function registered in this process, in canonical form (durations as
    timedeltas), so that it equals the definition read back from the registry."""
    written = FunctionDefinition(
        app=app,
        name=spec.name,
        events=tuple(t.event for t in spec.triggers if isinstance(t, OnEvent)),
        crons=tuple(t for t in spec.triggers if isinstance(t, Cron)),
        retry=spec.retry,
        on_failure=spec.on_failure,
        flow=spec.flow,
        condition=spec.condition,
    )
    return FunctionDefinition.from_json(written.document)


def _cron_order(cron: Mapping[str, str]) -> tuple[str, str]:
    return (cron["cron"], cron["tz"])


def _micros(value: Duration | None) -> int | None:
    if value is None:
        return None
    return parse_duration(value) // timedelta(microseconds=1)


def _delta(micros: int | None) -> timedelta | None:
    return None if micros is None else timedelta(microseconds=micros)


def _backoff_document(backoff: Backoff) -> Document:
    return {
        "base_us": _micros(backoff.base),
        "factor": backoff.factor,
        "cap_us": _micros(backoff.cap),
        "jitter": backoff.jitter,
    }


def _backoff(doc: Mapping[str, Any]) -> Backoff:
    return Backoff(
        timedelta(microseconds=doc["base_us"]), doc["factor"], timedelta(microseconds=doc["cap_us"]), doc["jitter"]
    )


def _flow_document(flow: FlowOptions) -> Document:
    throttle, rate, debounce, batch = flow.throttle, flow.rate_limit, flow.debounce, flow.batch
    return {
        "ordering_key": flow.ordering_key,
        "on_dead_letter": flow.on_dead_letter,
        "concurrency": [{"limit": c.limit, "key": c.key} for c in flow.concurrency],
        "throttle": None
        if throttle is None
        else {
            "limit": throttle.limit,
            "period_us": _micros(throttle.period),
            "key": throttle.key,
            "burst": throttle.burst,
        },
        "rate_limit": None
        if rate is None
        else {"limit": rate.limit, "period_us": _micros(rate.period), "key": rate.key},
        "debounce": None
        if debounce is None
        else {"period_us": _micros(debounce.period), "key": debounce.key, "max_wait_us": _micros(debounce.max_wait)},
        "batch": None
        if batch is None
        else {"size": batch.size, "timeout_us": _micros(batch.timeout), "key": batch.key},
        "priority": flow.priority,
        "idempotency": flow.idempotency,
        "timeout_us": _micros(flow.timeout),
        "step_timeout_us": _micros(flow.step_timeout),
        "cancel_on": [{"event": c.event, "match": c.match, "if": c.if_} for c in flow.cancel_on],
    }


def _flow(doc: Mapping[str, Any]) -> FlowOptions:
    throttle, rate, debounce, batch = doc["throttle"], doc["rate_limit"], doc["debounce"], doc["batch"]
    return FlowOptions(
        ordering_key=doc["ordering_key"],
        on_dead_letter=doc["on_dead_letter"],
        concurrency=tuple(Concurrency(c["limit"], c["key"]) for c in doc["concurrency"]),
        throttle=None
        if throttle is None
        else Throttle(
            throttle["limit"], timedelta(microseconds=throttle["period_us"]), throttle["key"], throttle["burst"]
        ),
        rate_limit=None
        if rate is None
        else RateLimit(rate["limit"], timedelta(microseconds=rate["period_us"]), rate["key"]),
        debounce=None
        if debounce is None
        else Debounce(timedelta(microseconds=debounce["period_us"]), debounce["key"], _delta(debounce["max_wait_us"])),
        batch=None
        if batch is None
        else Batch(batch["size"], timedelta(microseconds=batch["timeout_us"]), batch["key"]),
        priority=doc["priority"],
        idempotency=doc["idempotency"],
        timeout=_delta(doc["timeout_us"]),
        step_timeout=_delta(doc["step_timeout_us"]),
        cancel_on=tuple(CancelOn(c["event"], c["match"], c["if"]) for c in doc["cancel_on"]),
    )
