"""What registering an app's functions changes: decided once, in plain Python, for both stores.

Each store locks the registry, reads the rows that matter (every row of the app, and the served
rows of other apps with the same names), hands them here, and writes the plan back. A plan that
changes nothing writes nothing: many workers starting at once with the same code cost one read each.

A function name is served by one app at a time (runs, ordering keys, slots and dead letters are
keyed by the function's name): an app that registers a name another app serves takes it over,
and the change is logged as `moved`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stepwell.errors import ConfigurationError
from stepwell.model.definition import FunctionDefinition
from stepwell.store.base import RegisteredFunction, RegistryChange


@dataclass(frozen=True, slots=True)
class Upsert:
    name: str
    version: str
    definition: bytes


@dataclass(frozen=True, slots=True)
class LogEntry:
    app: str
    name: str
    change: str  # added | changed | retired | moved
    old_version: str | None
    new_version: str | None


@dataclass(frozen=True, slots=True)
class RegistrationPlan:
    upserts: tuple[Upsert, ...]  # rows of the app to insert, or to replace (and un-retire)
    retire: tuple[tuple[str, str], ...]  # (app, name) rows to mark retired
    log: tuple[LogEntry, ...]
    change: RegistryChange  # with the generation the registration leaves (bumped only if anything changed)


def plan_registration(
    app: str, definitions: Sequence[FunctionDefinition], rows: Sequence[RegisteredFunction], generation: int
) -> RegistrationPlan:
    """`rows`: the app's rows and the served rows of other apps named like one of `definitions`."""
    wanted = _by_name(app, definitions)
    own = {row.name: row for row in rows if row.app == app}
    others = {row.name: row for row in rows if row.app != app and row.retired_at is None}
    upserts, retire, log = [], [], []
    added, changed, retired, moved = [], [], [], []
    for name, definition in sorted(wanted.items()):
        version = definition.version
        row = own.get(name)
        if row is not None and row.retired_at is None and row.version == version and name not in others:
            continue
        upserts.append(Upsert(name, version, definition.to_json()))
        if name in others:
            retire.append((others[name].app, name))
            moved.append((name, others[name].app))
            log.append(LogEntry(others[name].app, name, "moved", others[name].version, None))
        if row is None or row.retired_at is not None:
            added.append(name)
            log.append(LogEntry(app, name, "added", None if row is None else row.version, version))
        elif row.version != version:
            changed.append(name)
            log.append(LogEntry(app, name, "changed", row.version, version))
    for name, row in sorted(own.items()):
        if name not in wanted and row.retired_at is None:
            retire.append((app, name))
            retired.append(name)
            log.append(LogEntry(app, name, "retired", row.version, None))
    bumped = generation + 1 if log else generation
    change = RegistryChange(bumped, tuple(added), tuple(changed), tuple(retired), tuple(moved))
    return RegistrationPlan(tuple(upserts), tuple(retire), tuple(log), change)


def _by_name(app: str, definitions: Sequence[FunctionDefinition]) -> dict[str, FunctionDefinition]:
    found: dict[str, FunctionDefinition] = {}
    for definition in definitions:
        if definition.app != app:
            raise ConfigurationError(
                f"register_functions({app!r}): {definition.name!r} belongs to app {definition.app!r}"
            )
        if definition.name in found:
            raise ConfigurationError(f"register_functions({app!r}): function {definition.name!r} is listed twice")
        found[definition.name] = definition
    return found
