"""The dashboard's pages: each parses its input, calls the App (one call, on a worker thread), renders.

Nothing here counts a big table: lists are pages of a fixed size read through an index, and a
number that would need a full count is shown as "N+" (an estimate, labelled as such).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.responses import Response

from stepwell.app import App
from stepwell.dashboard import views
from stepwell.dashboard.asgi import Page, PageRoute, Refused
from stepwell.errors import EventNotFound, RunNotFound
from stepwell.model.records import FanOutCounts, Run, RunStatus, StepKind

PAGE = 50  # runs per page
DEAD_PAGE = 100  # dead letters per page
COUNT_CAP = 10_000  # beyond this a bulk count is shown as "10000+"
SAMPLE = 5_000  # newest endings read per status for rates
SEARCH_SCAN = 10_000  # runs a payload search reads per page (then "search older runs")
STATS_WINDOW = timedelta(hours=1)  # p50/p95 and failure rate on the functions page
STATS_SAMPLE = 5_000  # newest endings those figures read at most


async def home(page: Page) -> Response:
    return page.redirect("/runs")


# runs


@dataclass(frozen=True, slots=True)
class RunQuery:
    function: str | None
    status: RunStatus | None
    key: str | None
    event: str | None
    parent: str | None
    since: datetime | None
    until: datetime | None
    after: tuple[datetime, str] | None
    payload: str | None = None  # `data.customer_id = 42`: a bounded search (App.search_runs)

    @classmethod
    def parse(cls, page: Page) -> RunQuery:
        status = page.query("status", 20)
        try:
            parsed_status = RunStatus(status) if status else None
        except ValueError:
            raise Refused(400, f"status {status!r} is not one of {', '.join(s.value for s in RunStatus)}") from None
        return cls(
            page.query("function", 200), parsed_status, page.query("key", 1000), page.query("event", 100),
            page.query("parent", 100), _time(page.query("since", 40), "since"), _time(page.query("until", 40), "until"),
            decode_cursor(page.query("cursor", 400)), page.query("payload", 1000),
        )  # fmt: skip

    def runs(self, app: App) -> tuple[list[Run], str | None, int | None]:
        """A page of runs, the next page's cursor, and (for a payload search) how many runs it scanned."""
        filters: dict[str, Any] = dict(
            function=self.function, status=self.status, key=self.key, event_id=self.event, parent=self.parent,
            since=self.since, until=self.until, after=self.after, limit=PAGE,
        )  # fmt: skip
        if self.payload:
            found = app.search_runs(self.payload, scan_limit=SEARCH_SCAN, **filters)
            following = found.resume_after
            return found.runs, encode_cursor_at(*following) if following else None, found.scanned
        runs = app.runs(**filters)
        return runs, encode_cursor(runs[-1]) if len(runs) == PAGE else None, None


async def runs_page(page: Page) -> Response:
    search = page.query("q", 200)
    if search:
        found = await page.call(_find, page.app, search)
        if found:
            return page.redirect(found)
        page.session.flash = f"nothing has the id {search!r} (runs accept a unique prefix; events need the full id)"
    query = RunQuery.parse(page)
    runs, cursor, scanned = await page.call(query.runs, page.app)
    template = "runs_rows.html" if page.query("partial") else "runs.html"
    names = await page.call(_function_names, page.app)
    return page.render(template, runs=runs, cursor=cursor, query=query, statuses=list(RunStatus), functions=names,
                       args=_args(page, "cursor", "partial", "q"), scanned=scanned)  # fmt: skip


def _find(app: App, search: str) -> str | None:
    """A run (by id or unique prefix) or an event (by id), as a dashboard path."""
    try:
        return f"/runs/{views.segment(app.resolve_run_id(search))}"
    except RunNotFound:
        pass
    try:
        return f"/events/{views.segment(app.event(search).id)}"
    except EventNotFound:
        return None


def _function_names(app: App) -> list[str]:
    return sorted({function.name for function in app.functions()})


async def run_page(page: Page) -> Response:
    run_id = str(page.request.path_params["run_id"])
    view = await page.call(_run_view, page.app, run_id)
    return page.render("run.html", **view, waterfall=views.waterfall(view["run"], page.now()))


def _run_view(app: App, run_id: str) -> dict[str, Any]:
    run = app.get_run(run_id)
    try:
        input_name, input_data = app.run_input(run_id)
    except RunNotFound:
        input_name, input_data = "", None
    fan_outs: list[tuple[str, FanOutCounts]] = [
        (step.id, app.fan_out_progress(run.id, step.id)) for step in run.steps if step.kind is StepKind.FAN_OUT
    ]
    input_tree, input_cut = views.json_tree(input_data)
    output_tree, output_cut = views.json_tree(run.output)
    return {
        "run": run, "input_name": input_name, "input_tree": input_tree, "input_cut": input_cut,
        "output_tree": output_tree, "output_cut": output_cut, "logs": app.run_logs(run.id, limit=500),
        "children": app.runs(parent=run.id, limit=PAGE), "fan_outs": fan_outs,
    }  # fmt: skip


async def run_json(page: Page) -> Response:
    """The next chunk of a large input or output as pretty JSON text ("show more")."""
    run_id, which = str(page.request.path_params["run_id"]), str(page.request.path_params["which"])
    if which not in ("input", "output"):
        raise Refused(404, "only a run's input or output can be shown")
    offset = _integer(page.query("offset", 12), "offset", 0)

    def chunk(app: App) -> tuple[str, int | None]:
        value = app.run_input(run_id)[1] if which == "input" else app.get_run(run_id).output
        return views.raw_chunk(value, offset)

    text, following = await page.call(chunk, page.app)
    return page.render("json_chunk.html", text=text, following=following, run_id=run_id, which=which)


async def run_cancel(page: Page) -> Response:
    run_id = str(page.request.path_params["run_id"])
    cancelled = await page.call(page.app.cancel, run_id)
    await page.audit("run.cancel", run_id, "cancelled" if cancelled else "had already ended")
    return page.redirect(
        f"/runs/{views.segment(run_id)}", "Run cancelled." if cancelled else "The run had already ended."
    )


async def run_replay(page: Page) -> Response:
    run_id = str(page.request.path_params["run_id"])
    new_id = await page.call(page.app.replay, run_id)
    await page.audit("run.replay", run_id, f"new run {new_id}")
    return page.redirect(f"/runs/{views.segment(new_id)}", f"Replay of {run_id} started.")


async def run_redrive(page: Page) -> Response:
    run_id = str(page.request.path_params["run_id"])
    fan_out = page.field("children") == "failed"
    ids = await page.call(page.app.redrive, None if fan_out else [run_id], fan_out=run_id if fan_out else None)
    action = "fan_out.redrive_failed" if fan_out else "run.redrive"
    await page.audit(action, run_id, f"{len(ids)} redriven")
    return page.redirect(f"/runs/{views.segment(run_id)}", f"{len(ids)} run(s) redriven.")


# dead letters


async def dead_letters_page(page: Page) -> Response:
    function = page.query("function", 200)
    letters = await page.call(page.app.dead_letters, function=function, limit=DEAD_PAGE + 1)
    names = await page.call(_function_names, page.app)
    more = len(letters) > DEAD_PAGE
    return page.render("dead_letters.html", letters=letters[:DEAD_PAGE], more=more, function=function,
                       functions=names)  # fmt: skip


async def dead_letters_confirm(page: Page) -> Response:
    """The confirmation of a bulk redrive, stating how many dead letters it will touch."""
    function, everything, ids = page.field("function", 200), page.field("scope") == "matching", page.fields("run_id")
    if everything:
        found = await page.call(page.app.dead_letters, function=function, limit=COUNT_CAP + 1)
        count = f"{COUNT_CAP}+" if len(found) > COUNT_CAP else str(len(found))
    elif not ids:
        raise Refused(400, "select at least one dead letter, or choose all matching the filter")
    else:
        count = str(len(ids))
    return page.render("confirm.html", count=count, function=function, everything=everything, ids=ids)


# events


async def events_page(page: Page) -> Response:
    event_id = page.query("id", 100)
    if event_id:
        return page.redirect(f"/events/{views.segment(event_id)}")
    before = decode_event_cursor(page.query("before", 400))
    events = await page.call(page.app.store.list_recent_events, limit=PAGE, before=before)
    following = encode_event_cursor(events[-1].received_at, events[-1].id) if len(events) == PAGE else None
    return page.render("events.html", events=events, following=following)


async def event_page(page: Page) -> Response:
    record = await page.call(page.app.event, str(page.request.path_params["event_id"]))
    tree, cut = views.json_tree(record.data)
    return page.render("event.html", event=record, tree=tree, cut=cut)


# functions and the queue


async def functions_page(page: Page) -> Response:
    return page.render("functions.html", rows=await page.call(_function_rows, page.app, page.now()))


_NOT_OPTIONS = frozenset({"name", "events", "crons", "format"})


def _function_rows(app: App, now: datetime) -> list[dict[str, Any]]:
    rates = _throughput(app, now - timedelta(hours=1), now)
    queues = {row.function: row for row in app.store.queue_gauges(now=now, scan_limit=COUNT_CAP)}
    rows = []
    for function in sorted(app.functions(), key=lambda f: f.name):
        definition = orjson.loads(function.definition)
        queue = queues.get(function.name)
        rows.append({
            "function": function, "definition": definition,
            "triggers": [f"event {name}" for name in definition.get("events") or []]
            + [f"cron {cron}" for cron in definition.get("crons") or []],
            "options": {k: orjson.dumps(v).decode() for k, v in definition.items() if k not in _NOT_OPTIONS and v},
            "per_minute": rates.per_minute(function.name), "failure_rate": rates.failure_rate(function.name),
            "sampled": rates.sampled,
            "ready": queue.ready if queue else 0, "capped": queue.capped if queue else False,
            "oldest": queue.oldest_ready_at if queue else None,
        })  # fmt: skip
    return _with_durations(app, rows)


def _with_durations(app: App, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """p50/p95 and the failure rate from the store, over STATS_WINDOW (at most STATS_SAMPLE endings)."""
    stats = app.function_durations(STATS_WINDOW, limit=STATS_SAMPLE)
    by_name = {figures.function: figures for figures in stats.functions}
    for row in rows:
        figures = by_name.get(row["function"].name)
        row["p50"] = figures.p50 if figures else None
        row["p95"] = figures.p95 if figures else None
        row["failure_rate"] = figures.failure_rate if figures else None
        row["stats_from"] = stats.sampled_from
    return rows


async def function_confirm(page: Page) -> Response:
    """The confirmation of a pause or resume, stating what it does and how many ready runs it touches."""
    function, action = _function_form(page)
    if function not in await page.call(_function_names, page.app):
        raise Refused(404, f"no function {function!r} in the registry")
    queues = await page.call(page.app.store.queue_gauges, now=page.now(), scan_limit=COUNT_CAP)
    queue = next((q for q in queues if q.function == function), None)
    ready = "0" if queue is None else f"{queue.ready}{'+' if queue.capped else ''}"
    return page.render("confirm_function.html", function=function, action=action, ready=ready)


async def function_action(page: Page) -> Response:
    function, action = _function_form(page, str(page.request.path_params["action"]))
    if action == "pause":
        paused_at = await page.call(page.app.pause_function, function)
        detail = f"paused since {paused_at.isoformat()}"
    else:
        await page.call(page.app.resume_function, function)
        detail = "resumed"
    await page.audit(f"function.{action}", function, detail)
    return page.redirect("/functions", f"Function {function}: {detail}.")


def _function_form(page: Page, action: str | None = None) -> tuple[str, str]:
    function, action = page.field("function", 200), action or page.field("action", 20)
    if action not in ("pause", "resume"):
        raise Refused(404, f"no function action {action!r}")
    if not function:
        raise Refused(400, "name the function")
    return function, action


def _throughput(app: App, since: datetime, now: datetime) -> views.Throughput:
    """Rates from the newest SAMPLE endings of each kind: bounded reads, whatever the table's size."""
    completed = app.store.recent_endings(status=RunStatus.COMPLETED, since=since, limit=SAMPLE)
    failed = app.store.recent_endings(status=RunStatus.FAILED, since=since, limit=SAMPLE)
    return views.throughput(completed, failed, since, now, SAMPLE)


async def queue_page(page: Page) -> Response:
    return page.render("queue.html", **await page.call(_queue_view, page.app, page.now()))


def _queue_view(app: App, now: datetime) -> dict[str, Any]:
    hour = _throughput(app, now - timedelta(hours=1), now)
    day = _throughput(app, now - timedelta(days=1), now)
    queues = app.store.queue_gauges(now=now, scan_limit=COUNT_CAP)
    top = max([sum(pair) for pair in (*hour.counts.values(), *day.counts.values())] + [1])
    return {"hour": hour, "day": day, "queues": queues, "top": top, "cap": COUNT_CAP}


# ordered keys


async def keys_page(page: Page) -> Response:
    def parked(app: App) -> list[Any]:
        return [letter for letter in app.dead_letters(limit=1000) if letter.key_policy == "parked"]

    letters = await page.call(parked, page.app)
    names = await page.call(_function_names, page.app)
    return page.render("keys.html", parked=letters, functions=names)


async def key_action(page: Page) -> Response:
    action = str(page.request.path_params["action"])
    function, key = page.field("function", 200), page.field("key", 100_000, strip=False)
    if not function or not key:
        raise Refused(400, "name the function and the key")
    app = page.app
    verbs = {"pause": app.pause_key, "resume": app.resume_key, "drain": app.drain_key, "skip": app.skip_key}
    if action not in verbs:
        raise Refused(404, f"no key action {action!r}")
    if action == "drain" and page.field("confirmed") != "yes":
        return await _drain_confirm(page, function, key)
    outcome = await page.call(verbs[action], function, key)
    detail = (
        f"{len(outcome)} runs cancelled" if isinstance(outcome, list) else ("" if outcome is None else str(outcome))
    )
    await page.audit(f"key.{action}", f"{function}/{key}", detail)
    return page.redirect("/keys", f"Key {action}: done. {detail}".strip())


async def _drain_confirm(page: Page, function: str, key: str) -> Response:
    """The confirmation of a drain, stating how many unstarted runs of the key it will cancel (now)."""

    def unstarted(app: App) -> list[Run]:
        queued = app.runs(function=function, key=key, status=RunStatus.QUEUED, limit=COUNT_CAP + 1)
        return [run for run in queued if run.started_at is None]  # a retry waiting has started: drain keeps it

    runs = await page.call(unstarted, page.app)
    count = f"{COUNT_CAP}+" if len(runs) > COUNT_CAP else str(len(runs))
    return page.render("confirm_key.html", function=function, key=key, count=count)


# the audit log


async def audit_page(page: Page) -> Response:
    before = page.query("before", 20)
    entries = await page.call(
        page.app.store.list_audit, limit=PAGE, before=_integer(before, "before", 1) if before else None
    )
    following = entries[-1].id if len(entries) == PAGE else None
    return page.render("audit.html", entries=entries, following=following)


# parsing


def encode_cursor(run: Run) -> str:
    return encode_cursor_at(run.created_at, run.id)


def encode_cursor_at(created_at: datetime, run_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at.isoformat(), run_id])).decode().rstrip("=")


def decode_cursor(value: str | None) -> tuple[datetime, str] | None:
    return None if value is None else _decode_pair(value)


def _decode_pair(value: str) -> tuple[datetime, str]:
    try:
        moment, identifier = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        return datetime.fromisoformat(moment), str(identifier)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise Refused(400, "that page cursor is not one this dashboard gave out; start from the first page") from None


def encode_event_cursor(received_at: datetime, event_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([received_at.isoformat(), event_id])).decode().rstrip("=")


def decode_event_cursor(value: str | None) -> tuple[datetime, str] | None:
    return None if value is None else _decode_pair(value)


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(400, f"{name} must be a date and time like 2026-05-01T12:00 (UTC), not {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _integer(value: str | None, name: str, minimum: int) -> int:
    try:
        number = int(value or minimum)
    except ValueError:
        raise Refused(400, f"{name} must be a whole number") from None
    if number < minimum:
        raise Refused(400, f"{name} must be at least {minimum}")
    return number


def _args(page: Page, *dropped: str) -> list[tuple[str, str]]:
    return [(name, value) for name, value in page.request.query_params.multi_items() if name not in dropped and value]


ROUTES = [
    PageRoute("GET", "/", home),
    PageRoute("GET", "/runs", runs_page),
    PageRoute("GET", "/runs/{run_id}", run_page),
    PageRoute("GET", "/runs/{run_id}/json/{which}", run_json),
    PageRoute("POST", "/runs/{run_id}/cancel", run_cancel, acts=True),
    PageRoute("POST", "/runs/{run_id}/replay", run_replay, acts=True),
    PageRoute("POST", "/runs/{run_id}/redrive", run_redrive, acts=True),
    PageRoute("GET", "/dead-letters", dead_letters_page),
    PageRoute("POST", "/dead-letters/confirm", dead_letters_confirm, acts=True),
    PageRoute("GET", "/events", events_page),
    PageRoute("GET", "/events/{event_id:path}", event_page),  # an event id may hold '/'
    PageRoute("GET", "/functions", functions_page),
    PageRoute("POST", "/functions/confirm", function_confirm, acts=True),
    PageRoute("POST", "/functions/{action}", function_action, acts=True),
    PageRoute("GET", "/queue", queue_page),
    PageRoute("GET", "/keys", keys_page),
    PageRoute("POST", "/keys/{action}", key_action, acts=True),
    PageRoute("GET", "/audit", audit_page),
]
