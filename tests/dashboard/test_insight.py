"""The dashboard's insight pages in a real headless browser, on every backend: search runs by a
payload field, p50/p95 on the functions page, the fan-out list, and a bulk redrive whose progress
climbs chunk by chunk until it states what was redriven and what was not (and why)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from stepwell.dashboard import insight
from stepwell.model.records import RunStatus
from tests.dashboard.conftest import Served
from tests.dashboard.helpers import FLAKY, HOSTILE
from tests.dashboard.test_security import _csrf, _login


def _settled(served: Served, run_ids: list[str]) -> None:
    deadline = time.monotonic() + 15
    while not all(served.app.get_run(run_id).status.is_terminal for run_id in run_ids):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _log_in(served: Served, browser: Any) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(served.url + "/login")
    page.fill("#token", served.tokens["operate"])
    page.click("button[type=submit]")
    page.wait_for_url("**/runs")
    return page


def test_runs_are_found_by_a_payload_field_and_a_bad_search_says_what_is_wrong(
    served: Served, browser: Any, artifacts: Path
) -> None:
    app = served.app
    sent = {n: app.send("sermon.uploaded", {"customer": {"id": n}, "title": HOSTILE}) for n in (41, 42, 43)}
    wanted = [run.id for run in app.runs(event_id=sent[42])]
    page = _log_in(served, browser)
    page.fill("#payload", "data.customer.id = 42")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**payload=**")
    rows = page.locator("#runs-rows tbody tr[data-href]")
    assert rows.count() == 1 and wanted[0] in rows.first.get_attribute("data-href")
    assert "1 match among the 3 runs read" in page.locator("#search-scope").inner_text()
    page.screenshot(path=str(artifacts / "runs-payload-search.png"), full_page=True)
    page.fill("#payload", "data.customer.id = 7")
    page.click("form.filters button[type=submit]")
    assert page.locator("#runs-rows tbody tr[data-href]").count() == 0
    page.fill("#payload", "customer.id = 42")
    page.click("form.filters button[type=submit]")
    assert "payload field 'customer.id' must start with 'data.'" in page.locator("main").inner_text()
    page.close()


def test_functions_show_p50_p95_and_the_failure_rate_of_the_last_hour(served: Served, browser: Any) -> None:
    app = served.app
    FLAKY["fail"] = True
    runs = [run.id for name in ("sermon.uploaded", "invoice.due") for run in app.runs(event_id=app.send(name, {}))]
    _settled(served, runs)
    page = _log_in(served, browser)
    page.goto(served.url + "/functions")
    transcribe = page.locator("tr", has=page.locator("a", has_text="transcribe"))
    assert transcribe.locator("td.p50").inner_text() not in ("", "—"), "a completed run has a duration"
    assert transcribe.locator("td").nth(3).inner_text() == "0%"
    billing = page.locator("tr", has=page.locator("a", has_text="billing"))
    assert billing.locator("td").nth(3).inner_text() == "100%"
    ordered = page.locator("tr", has=page.locator("a", has_text="ordered"))
    assert ordered.locator("td.p50").inner_text() == "—", "no run ended: no figure"
    assert "ended in the last hour" in page.locator("#duration-window").inner_text()
    page.close()


def test_the_fan_out_list_shows_progress_and_links_to_the_parent(served: Served, browser: Any, artifacts: Path) -> None:
    app = served.app
    [parent] = app.runs(event_id=app.send("fan", {}))
    assert app.wait(parent.id, timeout=15).status is RunStatus.COMPLETED
    page = _log_in(served, browser)
    page.goto(served.url + "/fan-outs")
    [row] = page.locator("#fan-outs tbody tr[data-href]").all()
    assert row.locator(".count").inner_text() == "3 / 3" and "done" in row.inner_text()
    assert row.locator("progress").get_attribute("value") == "3"
    page.screenshot(path=str(artifacts / "fan-outs.png"), full_page=True)
    row.locator("a.mono").click()
    page.wait_for_url(f"**/runs/{parent.id}")
    assert page.locator("h1 .status").inner_text() == "completed"
    page.close()


def test_a_bulk_redrive_shows_its_progress_and_its_result(
    served: Served, browser: Any, artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(insight, "CHUNK", 2)  # five dead letters: three chunks, three requests
    app = served.app
    FLAKY["fail"] = True
    failed = [run.id for n in range(5) for run in app.runs(event_id=app.send("invoice.due", {"n": n}))]
    _settled(served, failed)
    FLAKY["fail"] = False
    page = _log_in(served, browser)
    chunks: list[str] = []
    page.on("request", lambda request: chunks.append(request.url) if request.url.endswith("/chunk") else None)
    page.goto(served.url + "/dead-letters")
    page.check("#all-matching")
    page.click("#bulk-redrive")
    assert "Redrive 5 dead letters?" in page.locator("h1").inner_text()
    page.click("#confirm")
    page.wait_for_selector("#redrive-done", timeout=15_000)
    assert page.locator("#redriven-count").inner_text() == "5" and page.locator("#failed-count").inner_text() == "0"
    assert len(chunks) == 3, chunks
    page.screenshot(path=str(artifacts / "bulk-redrive.png"), full_page=True)
    for run_id in failed:
        assert app.wait(run_id, timeout=15).status is RunStatus.COMPLETED
    details = [entry.detail for entry in app.store.list_audit(limit=3)]  # newest first: one entry per chunk
    assert details == [f"{n} redriven, 0 failed to redrive" for n in (1, 2, 2)]
    page.close()


def test_a_redrive_says_how_many_failed_and_why(served: Served) -> None:
    app = served.app
    FLAKY["fail"] = True
    failed = [run.id for n in range(2) for run in app.runs(event_id=app.send("invoice.due", {"n": n}))]
    _settled(served, failed)
    FLAKY["fail"] = False
    app.redrive(failed[0])  # someone else got there first
    _settled(served, failed)
    client = _login(served)
    done = client.post(
        "/dead-letters/redrive", data={"scope": "selected", "run_id": failed, "csrf": _csrf(client, "/dead-letters")}
    )
    assert done.status_code == 303
    flash = client.get("/dead-letters").text
    assert "1 dead letter(s) redriven. 1 failed to redrive: 1 already redriven (by another" in flash, flash
    chunk = client.post(
        "/dead-letters/redrive/chunk", data={"expected": "1", "redriven": "0", "gone": "0", "taken": "0"}
    )
    assert chunk.status_code == 403 and "CSRF" in chunk.text, "a chunk is an action: no token, no redrive"


def test_search_older_runs_walks_every_match_a_scan_window_at_a_time(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepwell.dashboard import pages

    monkeypatch.setattr(pages, "SEARCH_SCAN", 2)  # two runs read per page
    app = served.app
    sent = [app.send("ordered", {"k": f"k{n}", "even": n % 2 == 0}) for n in range(7)]
    wanted = [
        run.id for n, event_id in reversed(list(enumerate(sent))) if n % 2 == 0 for run in app.runs(event_id=event_id)
    ]
    client = _login(served, "read")
    found: list[str] = []
    path: str | None = "/runs?payload=data.even+%3D+true"
    for _ in range(10):
        assert path is not None
        html = client.get(path).text
        assert "among the 2 runs read" in html or "among the 1 runs read" in html, html
        found += re.findall(r'<tr data-href="/runs/([0-9a-f]+)"', html)
        following = re.search(r'id="older" href="([^"]+)"', html)
        path = following.group(1).replace("&amp;", "&") if following else None
        if path is None:
            break
    assert found == wanted and path is None
