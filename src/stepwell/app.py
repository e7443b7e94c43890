"""The composition root: a registry of functions, a store and a clock; thin delegating methods.

This is the only module that imports a concrete store.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepwell.clock import Clock, SystemClock
from stepwell.config import resolve_database_url
from stepwell.errors import (
    ConfigurationError,
    DatabaseNotFound,
    EventNotFound,
    EventRejected,
    RunNotFound,
    StoreUnavailable,
    TimeoutExpired,
    UnknownFunction,
)
from stepwell.handle import FunctionHandle
from stepwell.model.apikeys import ApiKey, Scope, new_api_key, parse_scopes, token_key_id, token_matches
from stepwell.model.definition import FunctionDefinition, definition_of
from stepwell.model.durations import Duration, parse_duration
from stepwell.model.event import DEFAULT_MAX_EVENT_BYTES, EventIn, batch_of
from stepwell.model.expressions import compile_expression
from stepwell.model.flow import Batch, CancelOn, Concurrency, Debounce, FlowOptions, RateLimit, Throttle
from stepwell.model.function import FunctionSpec, OnEvent, Trigger, check_name
from stepwell.model.jsonvalue import decode, encode
from stepwell.model.payload import parse_payload_filter
from stepwell.model.records import DeadLetter, EventRecord, FanOutCounts, Run, RunStatus
from stepwell.model.retry import Backoff, RetryPolicy
from stepwell.model.schedule import Cron
from stepwell.observe.store import observed_store
from stepwell.runtime.dispatch import Routable, new_run
from stepwell.runtime.engine import Engine
from stepwell.runtime.maintenance import Maintenance, maintain
from stepwell.runtime.registry import Registry
from stepwell.runtime.routing import Router, explain_unserved, log_change
from stepwell.runtime.wakeup import Wakeups
from stepwell.runtime.worker import Worker, WorkerOptions

if TYPE_CHECKING:
    from stepwell.push.adapters import AsgiEndpoint, WsgiEndpoint
    from stepwell.push.dispatcher import PushOptions

from stepwell.store.base import (
    FanOutSummary,
    RedriveRequest,
    RegisteredFunction,
    RegistryChange,
    Retention,
    RunDurations,
    RunFilter,
    RunLogs,
    RunSearch,
    Store,
    transactional,
)

ENQUEUE_EVENT = "stepwell/function.enqueued"
log = logging.getLogger("stepwell.app")


class App:
    """A named set of functions bound to one store. Safe to use from several threads."""

    def __init__(
        self,
        name: str,
        *,
        database_url: str | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_output_bytes: int = 4 * 1024 * 1024,
        auto_migrate: bool = True,
        sqlite_synchronous: str = "NORMAL",
        retention: Retention | None = None,
    ) -> None:
        self.name = check_name(name, "App name")
        if not isinstance(max_event_bytes, int) or max_event_bytes < 1:
            raise ConfigurationError(f"max_event_bytes: {max_event_bytes!r} must be a positive int")
        self.registry = Registry()
        self.clock: Clock = clock or SystemClock()
        self.max_event_bytes = max_event_bytes
        if not isinstance(max_output_bytes, int) or max_output_bytes < 1:
            raise ConfigurationError(f"max_output_bytes: {max_output_bytes!r} must be a positive int")
        self.max_output_bytes = max_output_bytes
        self.auto_migrate = auto_migrate
        self.retention = retention or Retention()
        self.wakeups = Wakeups()
        self._database_url = database_url
        self._sqlite_synchronous = sqlite_synchronous
        self._store = None if store is None else observed_store(store)
        self._store_lock = threading.Lock()
        self._router: Router | None = None
        self._registered_on: Store | None = None  # the store this app last registered its functions in

    # binding to a store

    @property
    def store(self) -> Store:
        """The store, opened (and migrated unless auto_migrate=False) on first use."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    store = open_store(self._database_url, self.clock, self._sqlite_synchronous)
                    if self.auto_migrate:
                        store.migrate()
                    self._store = observed_store(store)
        return self._store

    @property
    def database_url(self) -> str | None:
        """The URL given to the app (None: $STEPWELL_DATABASE_URL or the default SQLite file)."""
        return self._database_url

    @property
    def database(self) -> str:
        """Which database the app uses, in words (`SQLite /abs/path.db`, `PostgreSQL user@host/db`); no password."""
        return resolve_database_url(self._database_url).describe()

    def require_schema(self) -> None:
        """For read-only use: DatabaseNotFound unless the database exists with Stepwell's schema.

        Creates nothing (no file, no table); use it with auto_migrate=False, before the first read.
        """
        resolved = resolve_database_url(self._database_url)
        if resolved.path is not None and not resolved.path.is_file():
            raise DatabaseNotFound(f"no Stepwell database at {resolved.path}")
        with self._store_lock:
            store = self._store or open_store(self._database_url, self.clock, self._sqlite_synchronous)
            if not store.applied_migrations():  # checked before any migration could create the schema
                if store is not self._store:
                    store.close()
                raise DatabaseNotFound(f"no Stepwell schema in {resolved.describe()}")
            if self._store is None:
                if self.auto_migrate:
                    store.migrate()  # an older schema is upgraded, as on any first use
                self._store = observed_store(store)

    def use_database(self, database_url: str) -> None:
        """Point the app at another database (closing the current store); it opens on next use."""
        resolve_database_url(database_url)
        self.close()
        with self._store_lock:
            self._database_url = database_url

    def bind(self, store: Store | None, clock: Clock | None = None) -> tuple[Store | None, Clock]:
        """Swap the store and clock (used by stepwell.testing); returns the previous pair."""
        with self._store_lock:
            previous = (self._store, self.clock)
            self._store, self.clock = None if store is None else observed_store(store), clock or self.clock
        return previous

    @property
    def router(self) -> Router:
        """Routes events from the store's function registry (one per store: rebuilt when the store changes)."""
        store = self.store
        router = self._router
        if router is None or router.store is not store:
            router = self._router = Router(store, self.clock)
        return router

    def close(self) -> None:
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    # registering

    def function(
        self,
        name: str,
        *,
        trigger: Trigger | None = None,
        triggers: Sequence[Trigger] = (),
        retries: int = 3,
        backoff: Backoff | None = None,
        on_failure: Callable[..., Any] | None = None,
        ordering_key: str | None = None,
        on_dead_letter: str = "skip",
        concurrency: Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
        priority: str | None = None,
        idempotency: str | None = None,
        timeout: Duration | None = None,
        step_timeout: Duration | None = None,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
        if_: str | None = None,
    ) -> Callable[[Callable[..., Any]], FunctionHandle]:
        """Register a durable function. Invalid options are refused here, before anything runs.

        Keys (`ordering_key`, `priority`, `idempotency`, the `key` of Concurrency, Throttle,
        RateLimit, Debounce and Batch) are CEL expressions over `event`, e.g. "event.data.user_id".
        `if_`: a CEL condition over `event`; a triggering event starts the function only when it holds
        (a missing field or an error counts as false). Cron ticks ignore it.
        """
        check_name(name, "function name")
        all_triggers = ((trigger,) if trigger is not None else ()) + tuple(triggers)
        for item in all_triggers:
            if not isinstance(item, OnEvent | Cron):
                raise ConfigurationError(
                    f"function {name!r}: trigger {item!r} is not a trigger; "
                    "use stepwell.on_event(...) or stepwell.cron(...)"
                )
        policy = RetryPolicy(retries=retries, backoff=backoff or Backoff())
        flow = FlowOptions(
            ordering_key=ordering_key,
            on_dead_letter=on_dead_letter,  # type: ignore[arg-type]
            concurrency=_as_tuple(concurrency),
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            batch=batch,
            priority=priority,
            idempotency=idempotency,
            timeout=None if timeout is None else parse_duration(timeout, option="timeout", allow_zero=False),
            step_timeout=None
            if step_timeout is None
            else parse_duration(step_timeout, option="step_timeout", allow_zero=False),
            cancel_on=_as_tuple(cancel_on),
        )
        if if_ is not None:
            compile_expression(if_, f"function {name!r}: if_")
        if on_failure is not None and not callable(on_failure):
            raise ConfigurationError(f"function {name!r}: on_failure must be a function, got {on_failure!r}")

        def register(handler: Callable[..., Any]) -> FunctionHandle:
            if not callable(handler):
                raise ConfigurationError(f"function {name!r}: {handler!r} is not callable")
            handler_name = None
            if on_failure is not None:
                handler_name = f"{name}.on-failure"
                self.registry.add(_spec(handler_name, on_failure, (), RetryPolicy()))
            spec = _spec(name, handler, all_triggers, policy, on_failure=handler_name, flow=flow, condition=if_)
            self.registry.add(spec)
            return FunctionHandle(self, spec)

        return register

    def register(self) -> RegistryChange:
        """Write this app's functions into the store's registry, so that events sent from anywhere (another
        service, `stepwell send`, the HTTP API) start them. Idempotent: a worker, `stepwell dev` and the
        first `send` of an app that defines functions call it. A changed function gets a new version; a
        function this app had registered before and no longer defines is retired (events stop starting
        it; its queued runs wait, saying why). Returns what changed."""
        store = self.store
        definitions = [definition_of(self.name, spec) for spec in self.registry.specs()]
        change = store.register_functions(self.name, definitions)
        log_change(self.name, change)
        self._registered_on = store
        if change.changed_anything:
            self.router.invalidate()
        return change

    def register_remote(
        self, app: str, definitions: Sequence[Any], push_url: str | None, push_functions: Sequence[str]
    ) -> RegistryChange:
        """Register another app's functions from their definition documents (the server's side of a web app
        registering through the API), `push_functions` pushed to `push_url`. ConfigurationError names what is
        wrong, and nothing is written then."""
        from stepwell.push.guard import check_url

        parsed = [FunctionDefinition.from_json(doc) for doc in definitions]
        if any(definition.app != app for definition in parsed):
            raise ConfigurationError(f"registration of app {app!r}: every definition must belong to it")
        names = {definition.name for definition in parsed}
        unknown = sorted(set(push_functions) - names)
        if unknown:
            raise ConfigurationError(f"push_functions: {', '.join(unknown)} not among the definitions")
        if push_functions and push_url is None:
            raise ConfigurationError("push_functions need a push_url")
        if push_url is not None:
            check_url(push_url)
        change = self.store.register_functions(app, parsed)
        log_change(app, change)
        self.store.set_push_endpoints(app, {name: push_url for name in push_functions if push_url is not None})
        self.router.invalidate()
        return change

    def functions(self) -> list[RegisteredFunction]:
        """The store's registry: every app's functions, served and retired, with their definitions."""
        return list(self.store.list_functions().functions)

    def _ensure_registered(self) -> None:
        """An app that defines functions registers them (once per store) before it sends or works."""
        if self._registered_on is not self.store and self.registry.names():
            self.register()

    # producing

    def send(
        self,
        name: str | Sequence[Any],
        data: Any = None,
        *,
        id: str | None = None,
        ts: datetime | None = None,
        connection: object | None = None,
    ) -> Any:
        """Store an event durably and start the runs it triggers; returns its id (a list for a batch).

        A batch (a list of dicts or EventIn) holds at most 10,000 events (`MAX_BATCH_EVENTS`); a
        longer one is refused with EventRejected before anything is written.

        `connection` (PostgreSQL): an open psycopg Connection, or SQLAlchemy Connection or Session,
        whose transaction the event and its runs join; Stepwell never commits it, so a rollback
        leaves nothing behind (transactional enqueue).

        Tracing: the `send` span is a child of the current OpenTelemetry context (a request's span);
        with only a W3C carrier at hand, wrap the call in `stepwell.observe.tracing.incoming(headers)`.
        """
        if isinstance(name, str):
            accepted = self._ingest([EventIn(name, data, id, ts)], connection)
            return accepted[0]
        if isinstance(name, bytes | dict) or not isinstance(name, Iterable):
            raise EventRejected(
                f"send(): the event name must be a str (or a list of events for a batch), got {type(name).__name__} "
                f"{name!r}; nothing was stored"
            )
        if data is not None or id is not None or ts is not None:
            raise ConfigurationError("send(batch) takes only the list; put data, id and ts in each entry")
        return self._ingest(batch_of(name), connection)

    async def asend(
        self,
        name: str | Sequence[Any],
        data: Any = None,
        *,
        id: str | None = None,
        ts: datetime | None = None,
        connection: object | None = None,
    ) -> Any:
        return await asyncio.to_thread(self.send, name, data, id=id, ts=ts, connection=connection)

    def _ingest(self, events: list[EventIn], connection: object | None = None) -> list[str]:
        self._ensure_registered()
        accepted = self.engine.send(events, connection=connection)
        if connection is None and any(a.run_ids and not a.duplicate for a in accepted):
            self.wakeups.notify()  # in a caller's transaction the runs are not visible yet: NOTIFY comes at commit
        return [a.id for a in accepted]

    def enqueue(self, function: str, data: Any = None, *, connection: object | None = None) -> str:
        """Start a run of `function` directly with `data` as its input; returns the id of the run doing it.

        The function's flow control applies (ordering, concurrency, throttle, priority, timeouts; an
        idempotency key already taken returns the run that has it; a rate limit raises EventRejected).
        Debounce and batching gather events, so a direct run skips them.
        `connection`: join the caller's open transaction, as in `send`."""
        spec = self._routable(function)
        payload = encode({} if data is None else data, where=f"enqueue({function!r}) data")
        if len(payload) > self.max_event_bytes:
            raise ConfigurationError(f"enqueue({function!r}) data is {len(payload)} bytes, over {self.max_event_bytes}")
        run = new_run(spec, self.clock.now(), input=payload, input_name=ENQUEUE_EVENT)
        if connection is None:
            [owner] = self.store.create_runs([run])
        else:
            [owner] = transactional(self.store).create_runs_in(connection, [run])
        if owner is None:
            raise EventRejected(f"enqueue({function!r}): over the function's rate limit; no run was started")
        if connection is None:
            self.wakeups.notify()
        return owner

    # inspecting and operating

    def runs(
        self,
        *,
        event_id: str | None = None,
        function: str | None = None,
        status: str | RunStatus | None = None,
        parent: str | None = None,
        key: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        after: tuple[datetime, str] | None = None,
    ) -> list[Run]:
        """Newest first. `key`: runs of that ordering key; `since`/`until`: created in [since, until);
        `after`: the (created_at, id) of the last run of the previous page (cursor pagination)."""
        query = RunFilter(
            event_id, function, RunStatus(status) if status else None, parent, limit, key, since, until, after
        )
        return self._explain(self.store.list_runs(query))

    def search_runs(
        self,
        payload: str,
        *,
        event_id: str | None = None,
        function: str | None = None,
        status: str | RunStatus | None = None,
        parent: str | None = None,
        key: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        scan_limit: int = 10_000,
    ) -> RunSearch:
        """Runs whose input has a field equal to a value: `payload` is `data.customer_id = 42`
        (InvalidPayloadFilter names what is wrong). One call reads at most `scan_limit` runs of the
        other filters, newest first; `RunSearch.resume_after` continues the search with `after=`."""
        found = self.store.search_runs(
            RunFilter(
                event_id, function, RunStatus(status) if status else None, parent, limit, key, since, until, after
            ),
            parse_payload_filter(payload),
            scan_limit=scan_limit,
        )
        return RunSearch(self._explain(found.runs), found.resume_after, found.scanned)

    def function_durations(self, window: Duration = "1h", *, limit: int = 10_000) -> RunDurations:
        """p50/p95 run duration and failure rate per function over the last `window` (at most the
        newest `limit` endings: `sampled_from` says when the sample was full)."""
        now = self.clock.now()
        since = now - parse_duration(window, option="window")
        return self.store.function_durations(since=since, now=now, limit=limit)

    def fan_outs(self, *, limit: int = 50, before: tuple[datetime, str, str] | None = None) -> list[FanOutSummary]:
        """Fan-outs newest first, with their children's progress (counts bounded; see Store.list_fan_outs)."""
        return self.store.list_fan_outs(limit=limit, before=before)

    def get_run(self, run_id: str) -> Run:
        run = self.store.get_run(run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r} (it may have been purged by retention)")
        return self._explain([run])[0]

    def _explain(self, runs: list[Run]) -> list[Run]:
        """Why queued runs wait, beyond what the store says: no app serves the function, its endpoint is down."""
        from stepwell.push.explain import explain_circuits

        return explain_circuits(explain_unserved(runs, self.router), self.store, self.clock.now())

    def run_input(self, run_id: str) -> tuple[str, Any]:
        """The (event name, data) the run started from."""
        found = self.store.get_run_input(run_id)
        if found is None:
            raise RunNotFound(f"no run {run_id!r} (it may have been purged by retention)")
        return found[0], decode(found[1])

    def wait(self, run_id: str, timeout: Duration = 30) -> Run:
        """Block until the run is completed, failed or cancelled; TimeoutExpired after `timeout`."""
        limit = parse_duration(timeout, option="wait timeout").total_seconds()
        deadline = time.monotonic() + limit  # real waiting, even under a virtual clock
        pause = 0.005
        while True:
            run = self.get_run(run_id)
            if run.status.is_terminal:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutExpired(f"run {run_id} is still {run.status.value} after {limit:g}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def cancel(self, run_id: str) -> bool:
        """Cancel a run that has not ended; a running attempt's later writes are refused."""
        self.get_run(run_id)
        return bool(self.store.cancel_runs([run_id]))

    def replay(self, run_id: str) -> str:
        """Start a new run of the same function from the same input; returns the new run's id."""
        original = self.get_run(run_id)
        spec = self._routable(original.function)
        found = self.store.get_run_input(run_id)
        if found is None:
            raise RunNotFound(f"no input stored for run {run_id!r}")
        name, data = found
        run = new_run(spec, self.clock.now(), input=data, input_name=name, replay_of=run_id)
        self.store.create_runs([run])
        self.wakeups.notify()
        return run.id

    def cancel_runs(
        self,
        *,
        function: str | None = None,
        status: str | RunStatus | None = None,
        key: str | None = None,
        event_id: str | None = None,
        limit: int = 1000,
    ) -> list[str]:
        """Cancel, in bulk, the unfinished runs that match a filter; returns the ids cancelled."""
        if function is None and key is None and event_id is None:
            raise ConfigurationError("cancel_runs needs function=, key= or event_id= (refusing to cancel everything)")
        found = self.store.list_runs(
            RunFilter(event_id, function, RunStatus(status) if status else None, None, limit, ordering_key=key)
        )
        return self.store.cancel_runs([run.id for run in found if not run.status.is_terminal])

    def pause_key(self, function: str, key: str) -> None:
        """Stop starting runs of one ordering key (every other key keeps flowing)."""
        self._routable(function)
        self.store.set_key_paused(function, key, True)

    def resume_key(self, function: str, key: str) -> None:
        self._routable(function)
        self.store.set_key_paused(function, key, False)
        self.wakeups.notify()

    def pause_function(self, function: str) -> datetime:
        """Stop starting runs of a whole function: workers and the push dispatcher claim none of them (queued,
        or due to resume after a sleep) until `resume_function`. A run in progress carries on; events still
        start runs, which wait with the reason. Returns when it was paused (the first time, if it already was)."""
        self._routable(function)
        paused_at = self.store.set_function_paused(function, True)
        assert paused_at is not None
        return paused_at

    def resume_function(self, function: str) -> None:
        """Let a paused function's runs start again, at once (resuming a function that runs is harmless).
        A paused function that no app serves any more can be resumed too."""
        if not any(f.name == function and f.paused_at is not None for f in self.functions()):
            self._routable(function)
        self.store.set_function_paused(function, False)
        self.wakeups.notify()

    def drain_key(self, function: str, key: str) -> list[str]:
        """Cancel every run of the key that has not started; a run in progress finishes."""
        self._routable(function)
        return self.store.drain_key(function, key)

    def skip_key(self, function: str, key: str) -> str | None:
        """Let a parked key move past its dead letter (which stays in the dead-letter list)."""
        self._routable(function)
        moved = self.store.skip_key(function, key)
        self.wakeups.notify()
        return moved

    def dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return self.store.list_dead_letters(function=function, limit=limit)

    def redrive(
        self,
        run_ids: Sequence[str] | str | None = None,
        *,
        function: str | None = None,
        since: datetime | None = None,
        fan_out: str | None = None,
    ) -> list[str]:
        """Re-run dead-lettered runs from their failed step; an entry already redriven is left alone.

        `fan_out=parent_run_id` redrives only that parent's failed children, and the parent too if
        its fan-out failed, so that it waits for them again and continues when they are done.
        """
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids or ())
        if not ids and function is None and since is None and fan_out is None:
            raise ConfigurationError("redrive needs run ids, function=, since= or fan_out=")
        redriven = self.store.redrive(RedriveRequest(ids, function, since, parent_id=fan_out))
        if redriven:
            self.wakeups.notify()
        return redriven

    def fan_out_progress(self, run_id: str, step_id: str) -> FanOutCounts:
        """Where a fan-out's children stand (queued, running, completed, failed, cancelled), while it runs."""
        return self.store.fan_out_counts(run_id, step_id)

    def run_logs(self, run_id: str, *, limit: int = 1000) -> RunLogs:
        """The lines a run logged through ctx.log (the newest `limit`), and how many were dropped."""
        return self.store.list_run_logs(self.get_run(run_id).id, limit=limit)

    def resolve_run_id(self, prefix: str) -> str:
        """The run whose id starts with `prefix` (as git resolves commits); RunNotFound names the problem."""
        found = self.store.resolve_run_prefix(prefix, limit=2)
        if not found:
            raise RunNotFound(f"no run id starts with {prefix!r}")
        if len(found) > 1:
            raise RunNotFound(f"{prefix!r} is ambiguous: {found[0]}, {found[1]}, ...; give more characters")
        return found[0]

    def event(self, event_id: str) -> EventRecord:
        record = self.store.get_event(event_id)
        if record is None:
            raise EventNotFound(f"no event {event_id!r} (it may have been purged by retention)")
        return record

    # API keys of the HTTP API

    def create_api_key(self, name: str, scopes: Sequence[str | Scope]) -> tuple[ApiKey, str]:
        """A new key and its token; the token is shown this once and only its hash is stored."""
        new, token = new_api_key(name, parse_scopes(list(scopes)))
        return self.store.create_api_key(new), token

    def api_keys(self) -> list[ApiKey]:
        return self.store.list_api_keys()

    def revoke_api_key(self, key_id: str) -> bool:
        return self.store.revoke_api_key(key_id)

    def check_api_key(self, token: str) -> ApiKey | None:
        """The key a presented token belongs to, if the token is right and the key not revoked."""
        key_id = token_key_id(token)
        stored = None if key_id is None else self.store.get_api_key(key_id)
        if stored is None or not token_matches(token, stored) or stored.key.revoked_at is not None:
            return None
        return stored.key

    # working

    @property
    def engine(self) -> Engine:
        return Engine(
            self.registry, self.store, self.clock, self.max_event_bytes, self.max_output_bytes, router=self.router
        )

    # push mode: the server's dispatcher calls the web app, which runs the functions

    def asgi(
        self,
        *,
        url: str | None = None,
        signing_key: str | Sequence[str] | None = None,
        functions: Sequence[str] | None = None,
        dev: bool = False,
    ) -> AsgiEndpoint:
        """An ASGI app serving this app's functions by push (mount it in FastAPI/Starlette).

        `url` (or $STEPWELL_SERVE_URL): the public URL where it is mounted; when set, the functions are
        registered (on a background thread, with retries) as pushed to it: through the server's API with
        $STEPWELL_SERVER and $STEPWELL_TOKEN, else in the store. `functions`: the names pushed (default:
        all; the others stay pulled by workers). `signing_key` (or $STEPWELL_SIGNING_KEY, several separated
        by commas while rotating): required unless `dev=True`, which answers unsigned loopback calls only."""
        from stepwell.push.adapters import AsgiEndpoint
        from stepwell.push.serve import endpoint_for, register_in_background, serve_config

        config = serve_config(self, url=url, signing_key=signing_key, functions=functions, dev=dev)
        if config.url is not None:
            register_in_background(self, config.url, config.functions)
        return AsgiEndpoint(endpoint_for(self, config))

    def wsgi(
        self,
        *,
        url: str | None = None,
        signing_key: str | Sequence[str] | None = None,
        functions: Sequence[str] | None = None,
        dev: bool = False,
    ) -> WsgiEndpoint:
        """A WSGI app serving this app's functions by push (Flask, Django); arguments as for `asgi`."""
        from stepwell.push.adapters import WsgiEndpoint
        from stepwell.push.serve import endpoint_for, register_in_background, serve_config

        config = serve_config(self, url=url, signing_key=signing_key, functions=functions, dev=dev)
        if config.url is not None:
            register_in_background(self, config.url, config.functions)
        return WsgiEndpoint(endpoint_for(self, config))

    def worker(self, options: WorkerOptions | None = None) -> Worker:
        """A worker for this app's functions; the app registers them first."""
        self._ensure_registered()
        return Worker(self.engine, options, wakeups=self.wakeups)

    def maintenance(self, retention: Retention | None = None) -> Maintenance:
        """Lease rescue, retention, run timeouts, and the cron ticks of every function in the store's registry
        (every app's): what a process without the user's code (`stepwell server`) runs to keep time moving."""
        return Maintenance(self.store, self.clock, retention=retention or self.retention, registry=self.router)

    async def run_maintenance(self, stop: asyncio.Event, *, interval: float = 5.0) -> None:
        """Run `maintenance()` passes until `stop` is set (sooner than `interval` when a cron tick is due)."""
        if await self._await_store(stop):
            await maintain(self.maintenance(), stop, interval=interval, on_cron=self.wakeups.notify)

    def run_scheduler(
        self, *, interval: float = 5.0, push: PushOptions | None = None, maintenance: bool = True
    ) -> None:
        """Run maintenance and cron (every registered app's) in this thread until SIGTERM or SIGINT, without
        claiming any run of a pulled function: for a process that has no user code, beside a server.
        `push`: also run the push dispatcher, which delivers the runs of pushed functions to their URLs."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            loops = [self.run_maintenance(stop, interval=interval)] if maintenance else []
            if push is not None:
                loops.append(self.run_push_dispatcher(stop, push))
            await asyncio.gather(*loops)

        asyncio.run(main())

    async def run_push_dispatcher(self, stop: asyncio.Event, options: PushOptions) -> None:
        """Deliver runs of pushed functions to their endpoints until `stop` is set (see stepwell.push)."""
        from stepwell.push.dispatcher import Dispatcher

        if await self._await_store(stop):
            await Dispatcher(self.store, self.clock, self.router, options).run(stop)

    def run_worker(self, **options: Any) -> None:
        """Run a worker in this thread until SIGTERM or SIGINT (options: see WorkerOptions).

        A database that cannot be reached at start-up is waited for (with backoff, forever), as it
        is once the worker runs: a worker never exits because the database is away for a while.
        """
        worker_options = WorkerOptions(**options)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if await self._await_store(stop):
                await self.worker(worker_options).run(stop)

        asyncio.run(main())

    async def _await_store(self, stop: asyncio.Event) -> bool:
        """Open (and migrate) the store, retrying while it is unavailable; False if stopped first."""
        delay = 0.5
        while not stop.is_set():
            try:
                await asyncio.to_thread(lambda: self.store)
                return True
            except StoreUnavailable as err:
                log.warning("the database is unavailable (%s); trying again in %.1fs", err, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 10.0)
        return False

    def _routable(self, function: str) -> Routable:
        """This process's function, or else the registry's definition of it (a producer without the code)."""
        spec = self.registry.get(function)
        if spec is not None:
            return spec
        found = self.router.table().served.get(function) or self.router.refresh().served.get(function)
        if found is None:
            served = sorted(self.router.table().served)
            raise UnknownFunction(
                f"no function {function!r} on app {self.name!r} or in the registry; registered: {served}"
            )
        return found


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _spec(
    name: str,
    handler: Callable[..., Any],
    triggers: tuple[Trigger, ...],
    policy: RetryPolicy,
    on_failure: str | None = None,
    flow: FlowOptions | None = None,
    condition: str | None = None,
) -> FunctionSpec:
    flow = None if flow is None or flow == FlowOptions() else flow
    is_async = inspect.iscoroutinefunction(handler)
    return FunctionSpec(name, handler, is_async, triggers, policy, on_failure, flow, condition)


def migration_sql(database_url: str | None = None) -> str:
    """The schema script of the URL's backend, as `migrate()` would apply it to an empty database.

    For teams that apply schema changes with their own tool (Alembic, Django); nothing is connected.
    """
    resolved = resolve_database_url(database_url)
    if resolved.backend == "sqlite":
        from stepwell.store.sqlite.store import migration_script
    elif resolved.backend == "postgresql":
        _require_postgres_extra()
        from stepwell.store.postgres.store import migration_script
    else:
        raise ConfigurationError(f"no store for {resolved.backend!r}")
    return migration_script()


def open_store(database_url: str | None, clock: Clock, sqlite_synchronous: str = "NORMAL") -> Store:
    resolved = resolve_database_url(database_url)
    if resolved.backend == "sqlite":
        from stepwell.store.sqlite.store import SQLiteStore

        assert resolved.path is not None
        return SQLiteStore(resolved.path, clock=clock, synchronous=sqlite_synchronous)
    if resolved.backend == "postgresql":
        _require_postgres_extra()
        from stepwell.store.postgres.store import PostgresStore

        # Production PostgreSQL runs on database time (one authority for leases); only tests pin it.
        return PostgresStore(resolved.url, clock=clock if clock.is_virtual else None)
    raise ConfigurationError(f"no store for {resolved.backend!r}")


def _require_postgres_extra() -> None:
    """A postgresql:// URL without the driver installed: say what to install, not a traceback."""
    for module in ("psycopg", "psycopg_pool"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigurationError(
                f"postgresql:// URLs need the PostgreSQL extra ({module} is not installed): "
                "pip install 'stepwell[postgres]'"
            ) from None
