"""The dashboard's security, over real HTTP: login, cookie flags, CSRF, roles, escaping, headers."""

from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

import stepwell
from stepwell.clock import VirtualClock
from stepwell.dashboard import create_dashboard
from stepwell.dashboard.sessions import Sessions
from stepwell.http import Limits, ServerThread
from tests.dashboard.conftest import Served
from tests.dashboard.helpers import FLAKY, HOSTILE

PAGES = ["/runs", "/dead-letters", "/events", "/fan-outs", "/functions", "/keys", "/queue", "/audit"]
LONG = "n" * 100_000  # a 100 KB value


def _login(served: Served, scope: str = "operate") -> httpx.Client:
    client = httpx.Client(base_url=served.url, headers={"origin": served.url})
    response = client.post("/login", data={"token": served.tokens[scope]})
    assert response.status_code == 303, response.text
    return client


def _csrf(client: httpx.Client, path: str = "/keys") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def _settle(app: stepwell.App) -> None:
    deadline = time.monotonic() + 15
    while any(not run.status.is_terminal for run in app.runs(limit=500)):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_login_sets_an_httponly_strict_cookie_that_holds_no_key(served: Served) -> None:
    client = httpx.Client(base_url=served.url)
    assert client.get("/runs").headers["location"].startswith("/login?next=")
    refused = client.post("/login", data={"token": "sw_nope_nope"})
    assert refused.status_code == 401 and "unknown, revoked" in refused.text
    response = client.post("/login", data={"token": served.tokens["read"]})
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    secret = served.tokens["read"].split("_", 2)[2]  # sw_<id>_<secret>: the secret may hold "_" itself
    assert served.tokens["read"] not in cookie and secret not in cookie
    assert client.get("/runs").status_code == 200


def test_login_refuses_a_foreign_origin_and_an_open_redirect(served: Served) -> None:
    client = httpx.Client(base_url=served.url)
    foreign = client.post("/login", data={"token": served.tokens["read"]}, headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403
    response = client.post("/login?next=//evil.example/x", data={"token": served.tokens["read"]})
    assert response.headers["location"] == "/runs"


def test_an_action_without_the_csrf_token_is_refused_and_changes_nothing(served: Served) -> None:
    client = _login(served)
    for data in ({"function": "ordered", "key": "k"}, {"function": "ordered", "key": "k", "csrf": "forged"}):
        response = client.post("/keys/pause", data=data)
        assert response.status_code == 403 and "CSRF" in response.text
    assert served.app.store.list_audit() == []
    token = _csrf(client)
    assert client.post("/keys/pause", data={"function": "ordered", "key": "k", "csrf": token}).status_code == 303
    [entry] = served.app.store.list_audit()
    assert (entry.action, entry.target, entry.actor_name) == ("key.pause", "ordered/k", "operate key")


def test_a_read_key_cannot_act(served: Served) -> None:
    client = _login(served, "read")
    token = _csrf(client, "/runs")  # the logout form carries it
    response = client.post("/keys/pause", data={"function": "ordered", "key": "k", "csrf": token})
    assert response.status_code == 403 and "operate" in response.text
    assert served.app.store.list_audit() == []


def test_a_function_pause_needs_the_csrf_token_and_the_operate_scope_and_is_audited(served: Served) -> None:
    client = _login(served)
    for path in ("/functions/confirm", "/functions/pause"):
        response = client.post(path, data={"function": "ordered", "action": "pause"})
        assert response.status_code == 403 and "CSRF" in response.text
    token = _csrf(client, "/functions")
    confirm = client.post("/functions/confirm", data={"function": "ordered", "action": "pause", "csrf": token})
    assert confirm.status_code == 200 and re.search(
        r"<h1>Pause function <span[^>]*>ordered</span>\?</h1>", confirm.text
    )
    assert [f.paused_at for f in served.app.functions() if f.name == "ordered"] == [None], "confirming changes nothing"
    ghost = client.post("/functions/confirm", data={"function": "<b>ghost</b>", "action": "pause", "csrf": token})
    assert ghost.status_code == 404 and "&lt;b&gt;ghost&lt;/b&gt;" in ghost.text and "<b>ghost" not in ghost.text
    unknown = client.post("/functions/pause", data={"function": "ghost", "csrf": token})
    assert unknown.status_code == 400 and "no function &#39;ghost&#39;" in unknown.text
    assert client.post("/functions/pause", data={"function": "ordered", "csrf": token}).status_code == 303
    assert [f.paused_at is not None for f in served.app.functions() if f.name == "ordered"] == [True]
    assert client.post("/functions/resume", data={"function": "ordered", "csrf": token}).status_code == 303
    assert client.post("/functions/stop", data={"function": "ordered", "csrf": token}).status_code == 404
    audit = [(entry.action, entry.target) for entry in served.app.store.list_audit()]
    assert sorted(audit) == [("function.pause", "ordered"), ("function.resume", "ordered")]
    reader = _login(served, "read")
    refused = reader.post("/functions/pause", data={"function": "ordered", "csrf": _csrf(reader, "/runs")})
    assert refused.status_code == 403 and "operate" in refused.text
    assert "fn-pause" not in reader.get("/functions").text, "no pause button for a read key"


def test_a_revoked_key_is_logged_out_at_once(served: Served) -> None:
    client = _login(served, "read")
    [key] = [key for key in served.app.api_keys() if key.name == "read key"]
    served.app.revoke_api_key(key.id)
    assert client.get("/runs").status_code == 303


def test_every_page_sends_a_strict_content_security_policy(served: Served) -> None:
    client = _login(served)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "<script>" not in response.text.replace('<script src="', ""), "no inline script"
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("where", ["data", "key", "error"])
def test_hostile_strings_are_escaped_on_every_page(served: Served, where: str) -> None:
    app = served.app
    FLAKY["fail"] = True
    if where == "data":
        event_id = app.send("sermon.uploaded", {HOSTILE: HOSTILE, "long": LONG, "name": HOSTILE + LONG})
    elif where == "key":
        event_id = app.send("ordered", {"k": HOSTILE + LONG[:400]})  # keys are at most 512 bytes
    else:
        event_id = app.send("invoice.due", {"note": HOSTILE})
    _settle(app)
    client = _login(served)
    [run] = app.runs(event_id=event_id)
    app.pause_key("ordered", HOSTILE)
    client.post("/keys/pause", data={"function": "ordered", "key": HOSTILE, "csrf": _csrf(client)})
    for path in [
        *PAGES,
        f"/runs/{run.id}",
        f"/events/{event_id}",
        f"/runs?key={HOSTILE}",
        f"/runs?q={HOSTILE}",
        f"/runs?payload=data.x = {HOSTILE}",
        f"/runs?payload={HOSTILE}",
    ]:
        html = client.get(path, follow_redirects=True).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;alert" in client.get(f"/runs/{run.id}").text
    assert "&lt;script&gt;alert" in client.get("/audit").text


def test_bad_filters_get_a_clear_error(served: Served) -> None:
    client = _login(served)
    response = client.get("/runs?status=sideways")
    assert response.status_code == 400 and "status &#39;sideways&#39; is not one of" in response.text
    response = client.get("/runs?since=yesterday")
    assert response.status_code == 400 and "since must be a date and time" in response.text
    assert client.get("/runs?cursor=garbage").status_code == 400
    response = client.get("/runs", params={"payload": "customer_id = 42"})
    assert (
        response.status_code == 400
        and "payload field &#39;customer_id&#39; must start with &#39;data.&#39;" in response.text
    )
    response = client.get("/runs", params={"payload": "data.customer_id"})
    assert response.status_code == 400 and "has no &#39;=&#39;" in response.text
    assert client.get("/fan-outs?cursor=garbage").status_code == 400
    assert client.get("/runs/nope").status_code == 404


def test_the_api_keeps_its_json_404_beside_the_dashboard(served: Served) -> None:
    response = httpx.get(served.url + "/api/v1/nope")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_the_dashboard_mounts_into_another_asgi_app(database_url: str) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = stepwell.App("mounted", database_url=database_url)
    host = Starlette(routes=[Mount("/ops", create_dashboard(app, auth=False))])
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    import threading

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        response = client.get("/ops/runs")
        assert response.status_code == 200
        assert 'href="/ops/static/style.css"' in response.text and 'href="/ops/dead-letters"' in response.text
        assert "Path=/ops" in response.headers["set-cookie"]
        assert client.get("/ops/static/style.css").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.close()


def test_dev_mode_acts_as_the_dev_operator_without_a_login(database_url: str) -> None:
    app = stepwell.App("dev", database_url=database_url)
    with ServerThread(app, port=0, auth=False) as server:
        client = httpx.Client(base_url=server.url)
        page = client.get("/keys")
        assert page.status_code == 200 and "dev server (no keys)" in page.text
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        assert client.post("/keys/pause", data={"function": "nope", "key": "k"}).status_code == 403
        refused = client.post("/keys/pause", data={"function": "nope", "key": "k", "csrf": token.group(1)})
        assert refused.status_code in (400, 404) and "nope" in refused.text
    app.close()


def test_a_run_with_a_large_input_renders_a_small_page_with_show_more(served: Served) -> None:
    value = {"rows": [{"id": n, "text": "x" * 100} for n in range(36_000)]}  # over 4 MiB of JSON
    event_id = served.app.send("sermon.uploaded", value)
    _settle(served.app)
    [run] = served.app.runs(event_id=event_id)
    client = _login(served)
    page = client.get(f"/runs/{run.id}")
    assert page.status_code == 200 and len(page.text) < 400_000
    assert f"/runs/{run.id}/json/input?offset=0" in page.text
    chunk = client.get(f"/runs/{run.id}/json/input?offset=0")
    assert chunk.status_code == 200 and "offset=65536" in chunk.text
    assert client.get(f"/runs/{run.id}/json/secrets?offset=0").status_code == 404


def test_redrive_of_a_fan_outs_failed_children_from_the_run_page(served: Served) -> None:
    app = served.app
    FLAKY["fail"] = True
    [parent] = app.runs(event_id=app.send("fan.shaky", {}))
    assert app.wait(parent.id, timeout=15).status.value == "failed"
    client = _login(served)
    page = client.get(f"/runs/{parent.id}")
    assert "Redrive the 1 failed children" in page.text and "1 failed" in page.text
    FLAKY["fail"] = False
    token = _csrf(client, f"/runs/{parent.id}")
    done = client.post(f"/runs/{parent.id}/redrive", data={"children": "failed", "csrf": token})
    assert done.status_code == 303
    assert app.wait(parent.id, timeout=15).status.value == "completed"
    [entry] = app.store.list_audit(limit=1)
    assert entry.action == "fan_out.redrive_failed" and entry.target == parent.id


# the review of 2026-11-29 (docs/security.md): D1 outage, D2 slow forms, D3 drain confirmation

AWAY = "postgresql://postgres@127.0.0.1:1/none?stepwell_pool_timeout=1"
DB_DETAIL = re.compile(r"127\.0\.0\.1\W+port|port 1 failed|Connection refused")


def test_an_outage_is_answered_with_503_in_general_words(caplog: pytest.LogCaptureFixture) -> None:
    """D1: the login (whose key check needs the database) and every page answer 503 with Retry-After,
    never a 500 or a page that names the database's address; the address goes to the log."""
    away = stepwell.App("away", database_url=AWAY)
    try:
        with ServerThread(away, host="127.0.0.1", port=0, auth=True) as server:
            token = "sw_0123456789abcdef_" + "A" * 43
            login = httpx.post(server.url + "/login", data={"token": token}, headers={"origin": server.url}, timeout=30)
            assert (login.status_code, login.headers.get("retry-after")) == (503, "1"), login.text[:300]
            assert "database is unavailable" in login.text and not DB_DETAIL.search(login.text)
        with ServerThread(away, host="127.0.0.1", port=0, auth=False) as server:
            for path in ("/runs", "/functions", "/keys"):
                page = httpx.get(server.url + path, timeout=30)
                assert (page.status_code, page.headers.get("retry-after")) == (503, "1"), page.text[:300]
                assert "database is unavailable" in page.text
                assert not DB_DETAIL.search(page.text), "the page names the database's address"
                assert page.headers["x-request-id"] in page.text, "the page names the request id of the log line"
    finally:
        away.close()
    assert any(DB_DETAIL.search(record.getMessage()) for record in caplog.records), "the cause is logged"


def _trickle(url: str, path: str, seconds: float) -> bytes:
    """Send a form's head and then one byte of its body every 0.2 s; what the server answers (b"" if it closes)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=0.2) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        sock.sendall((head + "Content-Length: 1000\r\n\r\ntoken=").encode())
        deadline, answer = time.monotonic() + seconds, b""
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"a")  # a slowloris that keeps the connection busy
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return answer
            if not chunk:
                return answer
            answer += chunk
            if b"\r\n\r\n" in answer:
                return answer
    raise AssertionError(f"no answer within {seconds} s: the connection is held as long as the client trickles")


def test_a_trickled_form_is_cut_off_with_408(served: Served) -> None:
    """D2: a form body must arrive within the server's body timeout (10 s by default; 1 s here, set as
    the API's is, with Limits(body_timeout=...)), on the login and on every action."""
    with ServerThread(served.app, port=0, auth=True, limits=Limits(body_timeout=1.0)) as server:
        assert _trickle(server.url, "/login", 8).startswith(b"HTTP/1.1 408")
        assert _trickle(server.url, "/keys/pause", 8).startswith(b"HTTP/1.1 403"), "not logged in: refused first"
    assert _trickle(served.url, "/login", 25).startswith(b"HTTP/1.1 408"), "the default limit holds too"


def test_a_form_declared_over_the_limit_is_refused_before_it_is_read(served: Served) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST /login HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        sock.sendall((head + f"Content-Length: {5 * 1024 * 1024}\r\n\r\ntoken=").encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 413"), "the server waited for a body it will refuse"


def test_draining_a_key_asks_for_confirmation_with_the_count_and_is_audited(served: Served) -> None:
    """D3: the first POST only counts the key's unstarted runs and asks; the confirmed POST cancels them."""
    served.app.pause_key("ordered", "held")  # the worker must not start them while we look
    sent = [served.app.send("ordered", {"k": "held", "n": n}) for n in range(3)]
    runs = [run.id for event_id in sent for run in served.app.runs(event_id=event_id)]
    client = _login(served)
    fields = {"csrf": _csrf(client), "function": "ordered", "key": "held"}
    first = client.post("/keys/drain", data=fields)
    assert first.status_code == 200 and 'name="confirmed" value="yes"' in first.text
    assert "Cancel 3 runs of key held?" in re.sub(r"<[^>]+>", "", first.text)
    statuses = [served.app.get_run(run_id).status for run_id in runs]
    assert statuses == [stepwell.RunStatus.QUEUED] * 3, "one click cancelled every unstarted run, unconfirmed"
    assert client.post("/keys/drain", data={**fields, "confirmed": "no"}).status_code == 200, "only 'yes' confirms"
    confirmed = client.post("/keys/drain", data={**fields, "confirmed": "yes"})
    assert confirmed.status_code == 303
    assert [served.app.get_run(run_id).status for run_id in runs] == [stepwell.RunStatus.CANCELLED] * 3
    [entry] = [e for e in served.app.store.list_audit(limit=10) if e.action == "key.drain"]
    assert (entry.target, entry.detail) == ("ordered/held", "3 runs cancelled")
    unconfirmed = client.post("/keys/drain", data={**fields, "csrf": "stale", "confirmed": "yes"})
    assert unconfirmed.status_code == 403, "the confirmed POST is an action like any other (CSRF)"


def test_a_session_ends_twelve_hours_after_the_login_however_busy(database_url: str) -> None:
    """Review leftover: sessions had an idle timeout only, so a busy (or stolen) session never ended."""
    clock = VirtualClock()
    app = stepwell.App("lifetime", database_url=database_url, clock=clock)
    token = app.create_api_key("reader", ["read"])[1]
    with ServerThread(app, port=0, auth=True) as server:
        client = httpx.Client(base_url=server.url)
        login = client.post("/login", data={"token": token})
        assert "Max-Age=43200" in login.headers["set-cookie"]
        for _ in range(11):  # used every hour: never idle
            clock.advance(hours=1)
            assert client.get("/runs").status_code == 200
        clock.advance(hours=1, seconds=1)
        assert client.get("/runs").headers["location"].startswith("/login?next=")
        assert client.post("/login", data={"token": token}).status_code == 303, "a new login starts a new lifetime"
        clock.advance(hours=12, seconds=1)  # unused for longer than the idle timeout
        assert client.get("/runs").status_code == 303
    app.close()


def test_the_session_lifetime_and_idle_timeout_are_configurable() -> None:
    clock = VirtualClock()
    sessions = Sessions(clock, idle=60, lifetime=150)
    session = sessions.create("k", "key", can_operate=False)
    for _ in range(2):
        clock.advance(seconds=59)
        assert sessions.get(session.id) is session
    clock.advance(seconds=59)  # 177 s after the login, 59 s after its last use
    assert sessions.get(session.id) is None and sessions.get(session.id) is None
    idle = sessions.create("k", "key", can_operate=False)
    clock.advance(seconds=61)
    assert sessions.get(idle.id) is None
    with pytest.raises(stepwell.ConfigurationError, match="session_lifetime must be a positive"):
        Sessions(clock, lifetime=0)
