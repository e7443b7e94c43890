"""The fan-out list and the bulk redrive that shows its progress (the rest of the pages: pages.py).

A bulk redrive of "all matching the filter" runs in chunks of CHUNK dead letters, one request each:
the progress fragment holds a form that htmx posts as soon as it is shown (`hx-trigger="load"`),
carrying the running totals, so the operator watches the count climb and no request runs long.
Without JavaScript the same form has a Continue button. Each chunk is an action: CSRF, Origin and
the operate scope are checked, and it writes its own audit record.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from starlette.responses import Response

from stepwell.app import App
from stepwell.dashboard.asgi import Page, PageRoute, Refused
from stepwell.dashboard.pages import _integer
from stepwell.errors import StepwellError

FAN_OUT_PAGE = 25
CHUNK = 500  # dead letters redriven per request of a bulk redrive
GONE = "the run no longer exists (purged by retention)"
TAKEN = "already redriven (by another operator or a concurrent redrive)"


# fan-outs


async def fan_outs_page(page: Page) -> Response:
    before = _decode_fan_out_cursor(page.query("cursor", 600))
    found = await page.call(page.app.fan_outs, limit=FAN_OUT_PAGE, before=before)
    cursor = _encode_fan_out_cursor(found[-1].created_at, found[-1].parent_id, found[-1].step_id) if (
        len(found) == FAN_OUT_PAGE
    ) else None  # fmt: skip
    return page.render("fan_outs.html", fan_outs=found, cursor=cursor)


def _encode_fan_out_cursor(created_at: datetime, parent_id: str, step_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at.isoformat(), parent_id, step_id])).decode().rstrip("=")


def _decode_fan_out_cursor(value: str | None) -> tuple[datetime, str, str] | None:
    if value is None:
        return None
    try:
        moment, parent_id, step_id = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        return datetime.fromisoformat(moment), str(parent_id), str(step_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise Refused(400, "that page cursor is not one this dashboard gave out; start from the first page") from None


# bulk redrive, in chunks


@dataclass(slots=True)
class Progress:
    """A bulk redrive so far: carried from chunk to chunk in the progress form's fields."""

    function: str | None
    expected: str  # the count the confirmation stated ("10000+" when capped)
    redriven: int = 0
    gone: int = 0
    taken: int = 0
    finished: bool = False
    error: str = ""
    reasons: list[tuple[str, int]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.gone + self.taken

    @property
    def target(self) -> int:
        """The progress bar's maximum: the stated count, or what is done when more turned up."""
        stated = self.expected.rstrip("+")
        return max(int(stated) if stated.isdigit() else 0, self.redriven + self.failed, 1)


async def dead_letters_redrive(page: Page) -> Response:
    """The confirmed redrive: the selected ids at once; all matching the filter in chunks, with progress."""
    function, everything, ids = page.field("function", 200), page.field("scope") == "matching", page.fields("run_id")
    if everything:
        expected = page.field("expected", 20) or "?"
        return page.render("redrive_progress.html", progress=_with_reasons(Progress(function, expected)))
    if not ids:
        raise Refused(400, "select at least one dead letter, or choose all matching the filter")
    progress = Progress(function, str(len(ids)))
    await page.call(_redrive_ids, page.app, ids, progress)
    target = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "")
    await page.audit("dead_letters.redrive", target, _detail(progress))
    failures = "; ".join(f"{count} {why}" for why, count in _with_reasons(progress).reasons)
    flash = f"{progress.redriven} dead letter(s) redriven." + (
        f" {progress.failed} failed to redrive: {failures}." if failures else ""
    )
    return page.redirect("/dead-letters", flash)


async def dead_letters_redrive_chunk(page: Page) -> Response:
    """One chunk of a bulk redrive of all dead letters matching the filter; answers the progress so far."""
    progress = Progress(
        page.field("function", 200), page.field("expected", 20) or "?",
        _integer(page.field("redriven", 12), "redriven", 0), _integer(page.field("gone", 12), "gone", 0),
        _integer(page.field("taken", 12), "taken", 0),
    )  # fmt: skip
    before = (progress.redriven, progress.failed)
    try:
        progress.finished = await page.call(_redrive_chunk, page.app, progress)
    except StepwellError as err:
        progress.error = f"stopped: {err}. Continue to resume where it stopped (nothing is redriven twice)."
    done_now = (progress.redriven - before[0], progress.failed - before[1])
    if done_now != (0, 0):
        await page.audit(
            "dead_letters.redrive", f"all matching function={progress.function or '*'}",
            f"{done_now[0]} redriven, {done_now[1]} failed to redrive",
        )  # fmt: skip
    fragment = page.request.headers.get("hx-request") == "true"
    template = "redrive_chunk.html" if fragment else "redrive_progress.html"
    return page.render(template, progress=_with_reasons(progress))


def _redrive_chunk(app: App, progress: Progress) -> bool:
    """Redrive the next CHUNK open dead letters of the filter; True when none are left."""
    found = app.dead_letters(function=progress.function, limit=CHUNK)
    if not found:
        return True
    _redrive_ids(app, [letter.run_id for letter in found], progress)
    return len(found) < CHUNK


def _redrive_ids(app: App, ids: list[str], progress: Progress) -> None:
    redriven = set(app.redrive(ids))
    progress.redriven += len(redriven)
    for run_id in dict.fromkeys(ids):
        if run_id in redriven:
            continue
        if app.store.get_run(run_id) is None:
            progress.gone += 1
        else:
            progress.taken += 1


def _with_reasons(progress: Progress) -> Progress:
    progress.reasons = [(why, count) for why, count in ((GONE, progress.gone), (TAKEN, progress.taken)) if count]
    return progress


def _detail(progress: Progress) -> str:
    return f"{progress.redriven} redriven, {progress.failed} failed to redrive"


ROUTES = [
    PageRoute("GET", "/fan-outs", fan_outs_page),
    PageRoute("POST", "/dead-letters/redrive", dead_letters_redrive, acts=True),
    PageRoute("POST", "/dead-letters/redrive/chunk", dead_letters_redrive_chunk, acts=True),
]
