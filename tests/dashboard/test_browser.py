"""The dashboard in a real headless browser (Debian's chromium driven by Playwright), on every backend.

One walk per backend, as an operator would: log in with a key, load every page (desktop and 390 px,
screenshots under .artifacts/dashboard/), follow a run from the list to its timeline, redrive a dead
letter by clicking and watch its run complete, pause an ordering key and see a run wait with the
reason, pause a whole function (confirming) and see a new event's run wait with the reason, then resume
it and see the run complete. Hostile strings in event data, keys and errors stay text: no dialog ever opens.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from stepwell.model.records import RunStatus
from tests.dashboard.conftest import Served
from tests.dashboard.helpers import FLAKY, HOSTILE

PAGES = ["runs", "dead-letters", "events", "fan-outs", "functions", "keys", "queue", "audit"]


def _wait_for(predicate: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _settled(served: Served, run_ids: list[str]) -> None:
    _wait_for(lambda: all(served.app.get_run(run_id).status.is_terminal for run_id in run_ids))


def test_an_operator_walks_the_dashboard(served: Served, browser: Any, artifacts: Path) -> None:
    app = served.app
    FLAKY["fail"] = True
    started = [app.send("sermon.uploaded", {"title": HOSTILE, "n": n}) for n in range(3)]
    started += [app.send("invoice.due", {"n": n}) for n in range(2)]
    started += [app.send("ordered", {"k": HOSTILE})]
    runs = [run.id for event_id in started for run in app.runs(event_id=event_id)]
    _settled(served, runs)
    dialogs: list[str] = []

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(served.url + "/runs")
    assert "/login" in page.url, "an anonymous visitor is sent to log in"
    page.fill("#token", served.tokens["operate"])
    page.click("button[type=submit]")
    page.wait_for_url("**/runs")

    for name in PAGES:  # every page answers, at desktop width and at 390 px
        response = page.goto(f"{served.url}/{name}")
        assert response is not None and response.status == 200, name
        page.screenshot(path=str(artifacts / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    for name in PAGES:
        page.goto(f"{served.url}/{name}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 400, f"{name} scrolls sideways at 390 px"
        page.screenshot(path=str(artifacts / f"{name}-390.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # from the runs list to a run's timeline, with the hostile title shown as text
    page.goto(f"{served.url}/runs?function=transcribe")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url("**/runs/*")
    assert page.locator(".waterfall .wrow").count() == 3
    assert page.get_by_text("cool-down").count() == 1
    assert page.locator(".jval", has_text='<script>alert(\\"x\\")</script>').count() == 2  # input, and output's echo
    page.screenshot(path=str(artifacts / "run.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 400, "the run page scrolls sideways at 390 px"
    page.screenshot(path=str(artifacts / "run-390.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # redrive a dead letter by clicking; its run completes
    FLAKY["fail"] = False
    page.goto(f"{served.url}/dead-letters")
    assert page.locator("tbody tr").count() == 2
    dead_id = page.locator('input[name="run_id"]').first.get_attribute("value")
    page.locator('input[name="run_id"]').first.check()
    page.click("#bulk-redrive")
    assert "Redrive 1 dead letter?" in page.locator("h1").inner_text()
    page.click("#confirm")
    page.wait_for_url("**/dead-letters")
    assert "1 dead letter(s) redriven" in page.locator(".flash").inner_text()
    assert app.wait(dead_id, timeout=15).status is RunStatus.COMPLETED
    page.goto(f"{served.url}/runs/{dead_id}")
    assert page.locator("h1 .status").inner_text() == "completed"

    # pause an ordering key; a new run of it waits and says why
    page.goto(f"{served.url}/keys")
    page.select_option('select[name="function"]', "ordered")
    page.fill('input[name="key"]', "acct-7")
    page.click("#key-pause")
    assert "Key pause: done" in page.locator(".flash").inner_text()
    [waiting] = [run.id for run in app.runs(event_id=app.send("ordered", {"k": "acct-7"}))]
    time.sleep(0.5)  # the worker polls every 20 ms: long enough to have started it, were it free to
    page.goto(f"{served.url}/runs/{waiting}")
    assert page.locator("#waiting-reason").inner_text() == "ordering key acct-7 is paused"
    page.screenshot(path=str(artifacts / "waiting.png"), full_page=True)
    page.goto(f"{served.url}/keys")
    page.select_option('select[name="function"]', "ordered")
    page.fill('input[name="key"]', "acct-7")
    page.click("#key-resume")
    assert app.wait(waiting, timeout=15).status is RunStatus.COMPLETED

    # pause a whole function (confirming); a run of a new event waits and says why; resume, and it completes
    page.goto(f"{served.url}/functions")
    page.click('button.fn-pause[data-function="ordered"]')
    assert page.locator("h1").inner_text() == "Pause function ordered?"
    assert "ready run" in page.locator("#confirm-what").inner_text()
    page.click("#confirm")
    page.wait_for_url("**/functions")
    assert "Function ordered: paused since" in page.locator(".flash").inner_text()
    assert page.locator('button.fn-resume[data-function="ordered"]').count() == 1, "the paused state is shown"
    [held] = [run.id for run in app.runs(event_id=app.send("ordered", {"k": "acct-8"}))]
    time.sleep(0.5)  # the worker polls every 20 ms: long enough to have started it, were it free to
    page.goto(f"{served.url}/runs/{held}")
    assert page.locator("h1 .status").inner_text() == "queued"
    assert page.locator("#waiting-reason").inner_text() == "function ordered is paused"
    page.screenshot(path=str(artifacts / "function-paused.png"), full_page=True)
    page.goto(f"{served.url}/functions")
    page.screenshot(path=str(artifacts / "functions-paused.png"), full_page=True)
    page.click('button.fn-resume[data-function="ordered"]')
    assert page.locator("h1").inner_text() == "Resume function ordered?"
    page.click("#confirm")
    page.wait_for_url("**/functions")
    assert "Function ordered: resumed" in page.locator(".flash").inner_text()
    assert app.wait(held, timeout=15).status is RunStatus.COMPLETED
    page.goto(f"{served.url}/runs/{held}")
    assert page.locator("h1 .status").inner_text() == "completed"

    # the event stream, and one event's disposition
    page.goto(f"{served.url}/events")
    assert page.locator("tbody tr[data-href]").count() >= len(started)
    page.goto(f"{served.url}/events/{started[0]}")
    assert page.locator("#disposition").inner_text() == "started"

    # the audit log names who did what
    page.goto(f"{served.url}/audit")
    text = page.locator("table").inner_text()
    for action in ("dead_letters.redrive", "key.pause", "key.resume", "function.pause", "function.resume"):
        assert action in text
    assert "operate key" in text
    page.screenshot(path=str(artifacts / "audit.png"), full_page=True)
    assert dialogs == [], "a hostile string ran as script"
    page.close()


def test_a_read_key_sees_but_cannot_act(served: Served, browser: Any) -> None:
    FLAKY["fail"] = True
    [run] = served.app.runs(event_id=served.app.send("invoice.due", {"n": 1}))
    _settled(served, [run.id])
    page = browser.new_page()
    page.goto(served.url + "/login")
    page.fill("#token", served.tokens["read"])
    page.click("button[type=submit]")
    page.goto(f"{served.url}/runs/{run.id}")
    assert "read-only" in page.locator(".who").inner_text()
    assert page.locator("#redrive").count() == 0, "no action buttons for a read key"
    page.goto(f"{served.url}/dead-letters")
    assert page.locator("#bulk-redrive").count() == 0
    page.close()


def test_the_runs_list_refreshes_live_and_pauses_while_hidden(served: Served, browser: Any) -> None:
    page = browser.new_page()
    page.goto(served.url + "/login")
    page.fill("#token", served.tokens["read"])
    page.click("button[type=submit]")
    page.wait_for_url("**/runs")
    assert page.locator("tbody tr[data-href]").count() == 0
    event_id = served.app.send("sermon.uploaded", {"n": 1})
    page.wait_for_selector("tbody tr[data-href]", timeout=10_000)  # no reload: the list refreshed itself
    assert served.app.runs(event_id=event_id)[0].id in page.locator("tbody").inner_html()
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "partial=1" in request.url else None)
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'})"
    )  # what a background tab reports
    time.sleep(4)  # more than one refresh interval (3 s)
    assert polls == [], "a hidden tab does not poll"
    page.close()
