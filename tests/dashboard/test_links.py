"""Links to user-supplied values (event ids) are URL-encoded, so each resolves to what it names."""

from __future__ import annotations

import html
import re

import httpx

from tests.dashboard.conftest import Served

AWKWARD = "inv/2026?x=1#frag 100% é—"  # `/`, `?`, `#`, `%`, a space and non-ASCII


def _login(served: Served) -> httpx.Client:
    client = httpx.Client(base_url=served.url, headers={"origin": served.url})
    assert client.post("/login", data={"token": served.tokens["read"]}).status_code == 303
    return client


def _hrefs(text: str, prefix: str) -> list[str]:
    return [html.unescape(href) for href in re.findall(r'(?<=\s)href="([^"]+)"', text) if href.startswith(prefix)]


def test_an_event_id_with_reserved_characters_links_to_its_own_page(served: Served) -> None:
    served.app.send("ordered", {"k": AWKWARD}, id=AWKWARD)
    client = _login(served)
    [link] = _hrefs(client.get("/events").text, "/events/")
    assert link == "/events/inv%2F2026%3Fx%3D1%23frag%20100%25%20%C3%A9%E2%80%94"
    page = client.get(link)
    assert page.status_code == 200 and f'<span class="mono">{html.escape(AWKWARD)}</span>' in page.text
    [run] = served.app.runs(function="ordered")
    [back] = _hrefs(client.get(f"/runs/{run.id}").text, "/events/")
    assert back == link
    searched = client.get("/events", params={"id": AWKWARD})
    assert searched.status_code == 303 and searched.headers["location"] == link


def test_the_login_returns_to_an_event_page_with_reserved_characters(served: Served) -> None:
    served.app.send("ordered", {"k": AWKWARD}, id=AWKWARD)
    link = "/events/inv%2F2026%3Fx%3D1%23frag%20100%25%20%C3%A9%E2%80%94"
    client = httpx.Client(base_url=served.url, headers={"origin": served.url})
    to_login = client.get(link)
    assert to_login.status_code == 303 and to_login.headers["location"].startswith("/login?next=")
    login_page = client.get(to_login.headers["location"])
    [action] = re.findall(r'action="([^"]+)"', login_page.text)
    logged_in = client.post(html.unescape(action), data={"token": served.tokens["read"]})
    # the server sees the path decoded, so the id's '/' comes back as a plain '/': the same page
    assert logged_in.status_code == 303 and logged_in.headers["location"] == link.replace("%2F", "/")
    page = client.get(logged_in.headers["location"])
    assert page.status_code == 200 and f'<span class="mono">{html.escape(AWKWARD)}</span>' in page.text
