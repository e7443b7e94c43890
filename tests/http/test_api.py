"""The /api/v1 routes on a real server: each answers what the App answers, in the documented shape."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from tests.http.conftest import Served


def post(served: Served, path: str, body: object, scope: str = "admin") -> tuple[int, dict]:  # type: ignore[type-arg]
    response = served.http.post(path, json=body, headers=served.headers(scope))
    return response.status_code, response.json()


def get(served: Served, path: str, scope: str = "admin", **params: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = served.http.get(path, params=params, headers=served.headers(scope))  # type: ignore[arg-type]
    return response.status_code, response.json()


def test_health_and_readiness_need_no_key(served: Served) -> None:
    assert served.http.get("/api/v1/health").json() == {"status": "ok"}
    ready = served.http.get("/api/v1/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_one_event_is_accepted_after_commit_and_its_runs_exist(served: Served) -> None:
    status, body = post(served, "/api/v1/events", {"name": "user.created", "data": {"name": "ada"}}, "ingest")
    assert status == 202 and body["ids"] == [body["id"]]
    [run] = served.app.runs(event_id=body["id"])  # durable and routed when 202 came back
    assert run.function == "greet"
    status, record = get(served, f"/api/v1/events/{body['id']}", "read")
    assert status == 200
    assert (record["disposition"], record["run_ids"], record["data"]) == ("started", [run.id], {"name": "ada"})


def test_a_batch_answers_the_ids_in_order_and_a_repeated_id_is_a_no_op(served: Served) -> None:
    events = [{"name": "user.created", "data": {"name": str(i)}, "id": f"evt-{i}"} for i in range(5)]
    status, body = post(served, "/api/v1/events", events, "ingest")
    assert (status, body) == (202, {"ids": [f"evt-{i}" for i in range(5)]})
    status, again = post(served, "/api/v1/events", events[2], "ingest")
    assert (status, again["id"]) == (202, "evt-2")
    assert len(served.app.runs(function="greet")) == 5, "the repeated id started nothing"


def test_event_data_must_be_an_object_as_in_python_and_null_means_empty(served: Served) -> None:
    for index, data in enumerate([5, "text", [1, 2], True]):
        batch = [{"name": "user.created"}, {"name": "user.created", "data": data}]
        status, body = post(served, "/api/v1/events", batch, "ingest")
        assert (status, body["code"], body["field"]) == (422, "invalid", "[1].data"), (index, body)
        assert "data must be an object" in body["message"]
    assert served.app.store.list_recent_events(limit=10) == []
    status, body = post(served, "/api/v1/events", {"name": "user.created", "data": None}, "ingest")
    assert status == 202 and served.app.event(body["id"]).data == {}


def test_an_event_that_matches_nothing_says_why(served: Served) -> None:
    _, body = post(served, "/api/v1/events", {"name": "nobody.listens", "ts": "2030-01-01T00:00:00Z"}, "ingest")
    _, record = get(served, f"/api/v1/events/{body['id']}")
    assert (record["disposition"], record["run_ids"], record["ts"]) == ("no_match", [], "2030-01-01T00:00:00+00:00")


def test_runs_filter_and_paginate_by_cursor_without_gaps_or_repeats(served: Served) -> None:
    post(served, "/api/v1/events", [{"name": "user.created", "data": {"name": str(i)}} for i in range(7)])
    post(served, "/api/v1/events", {"name": "ordered", "data": {"k": "a"}})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"function": "greet", "limit": 3, **({"cursor": cursor} if cursor else {})}
        status, page = get(served, "/api/v1/runs", "read", **params)
        assert status == 200
        seen += [run["id"] for run in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = [run.id for run in served.app.runs(function="greet")]
    assert seen == expected and len(seen) == 7
    _, by_key = get(served, "/api/v1/runs", key="a")
    assert [r["function"] for r in by_key["runs"]] == ["ordered"]
    _, queued = get(served, "/api/v1/runs", status="queued", function="ordered")
    assert len(queued["runs"]) == 1


def test_runs_filter_by_time_range(served: Served) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    post(served, "/api/v1/events", {"name": "user.created"})
    after = datetime.now(UTC) + timedelta(seconds=1)
    _, inside = get(served, "/api/v1/runs", since=before.isoformat(), until=after.isoformat())
    _, later = get(served, "/api/v1/runs", since=after.isoformat())
    assert len(inside["runs"]) == 1 and later["runs"] == []


def test_runs_search_by_a_payload_field_and_a_bad_search_names_the_problem(served: Served) -> None:
    _, body = post(served, "/api/v1/events", [{"name": "user.created", "data": {"name": n}} for n in ("ada", "bo")])
    [ada] = served.app.runs(event_id=body["ids"][0])
    status, page = get(served, "/api/v1/runs", "read", payload='data.name = "ada"')
    assert (status, [run["id"] for run in page["runs"]], page["next_cursor"]) == (200, [ada.id], None)
    status, bad = get(served, "/api/v1/runs", "read", payload="name = ada")
    assert status == 422 and "must start with 'data.'" in bad["message"], bad


def test_get_run_has_steps_input_output_and_the_error_with_its_traceback(served: Served) -> None:
    _, ok = post(served, "/api/v1/events", {"name": "user.created", "data": {"name": "ada"}})
    _, bad = post(served, "/api/v1/events", {"name": "boom", "data": {"x": 1}})
    served.drain()
    [good_run] = served.app.runs(event_id=ok["id"])
    _, run = get(served, f"/api/v1/runs/{good_run.id}", "read")
    assert (run["status"], run["output"], run["input"]) == (
        "completed",
        {"hello": "ada"},
        {"name": "user.created", "data": {"name": "ada"}},
    )
    [failed] = served.app.runs(event_id=bad["id"])
    _, run = get(served, f"/api/v1/runs/{failed.id}")
    assert run["status"] == "failed"
    assert run["error"]["type"] == "ValueError" and "kaboom" in run["error"]["message"]
    assert "raise ValueError" in run["error"]["traceback"]
    assert [(s["id"], s["status"], s["output"]) for s in run["steps"]] == [("first", "completed", 1)]


def test_get_run_of_a_queued_run_says_why_it_waits(served: Served) -> None:
    post(served, "/api/v1/events", {"name": "user.created"})
    [run] = served.app.runs()
    _, shown = get(served, f"/api/v1/runs/{run.id}")
    assert shown["status"] == "queued" and shown["waiting_reason"]


def test_unknown_run_and_event_are_404_in_the_error_shape(served: Served) -> None:
    for path in ("/api/v1/runs/nope", "/api/v1/events/nope", "/api/v1/runs/nope/wait"):
        status, body = get(served, path)
        assert status == 404 and body["code"] == "not_found" and body["message"], path


def test_cancel_one_and_in_bulk_by_filter(served: Served) -> None:
    post(served, "/api/v1/events", [{"name": "user.created"} for _ in range(3)])
    post(served, "/api/v1/events", {"name": "ordered", "data": {"k": "z"}})
    first, *rest = served.app.runs(function="greet")
    status, body = post(served, f"/api/v1/runs/{first.id}/cancel", None, "operate")
    assert (status, body) == (200, {"cancelled": True})
    assert post(served, f"/api/v1/runs/{first.id}/cancel", None)[1] == {"cancelled": False}
    status, body = post(served, "/api/v1/runs/cancel", {"function": "greet"}, "operate")
    assert status == 200 and sorted(body["cancelled"]) == sorted(r.id for r in rest)
    assert served.app.runs(function="ordered")[0].status == "queued", "other functions untouched"
    status, body = post(served, "/api/v1/runs/cancel", {})
    assert status == 422 and "refusing to cancel everything" in body["message"]


def test_replay_starts_a_new_run_from_the_same_input(served: Served) -> None:
    _, sent = post(served, "/api/v1/events", {"name": "user.created", "data": {"name": "bo"}})
    [original] = served.app.runs(event_id=sent["id"])
    status, body = post(served, f"/api/v1/runs/{original.id}/replay", None, "operate")
    assert status == 201
    replayed = served.app.get_run(body["run_id"])
    assert replayed.replay_of == original.id and served.app.run_input(replayed.id)[1] == {"name": "bo"}


def test_wait_long_polls_until_the_run_ends(served: Served) -> None:
    _, sent = post(served, "/api/v1/events", {"name": "user.created", "data": {"name": "cy"}})
    [run] = served.app.runs(event_id=sent["id"])
    _, early = get(served, f"/api/v1/runs/{run.id}/wait", timeout=0.2)
    assert early["terminal"] is False and early["run"]["status"] == "queued"
    worker = threading.Thread(target=lambda: (time.sleep(0.3), served.drain()))
    worker.start()
    begun = time.monotonic()
    _, done = get(served, f"/api/v1/runs/{run.id}/wait", timeout=20)
    worker.join()
    assert done["terminal"] is True and done["run"]["output"] == {"hello": "cy"}
    assert time.monotonic() - begun < 15
    status, body = get(served, f"/api/v1/runs/{run.id}/wait", timeout=61)
    assert status == 422 and body["field"] == "timeout", "the long-poll is bounded"


def test_dead_letters_list_and_redrive_by_ids_and_by_filter(served: Served) -> None:
    post(served, "/api/v1/events", [{"name": "boom"}, {"name": "boom"}])
    served.drain()
    status, body = get(served, "/api/v1/dead-letters", "read", function="explode")
    assert status == 200 and len(body["dead_letters"]) == 2
    first, second = (entry["run_id"] for entry in body["dead_letters"])
    assert body["dead_letters"][0]["error"]["type"] == "ValueError"
    status, body = post(served, "/api/v1/dead-letters/redrive", {"run_ids": [first]}, "operate")
    assert (status, body) == (200, {"redriven": [first]})
    status, body = post(served, "/api/v1/dead-letters/redrive", {"function": "explode"}, "operate")
    assert body == {"redriven": [second]}, "each entry once"
    status, body = post(served, "/api/v1/dead-letters/redrive", {})
    assert status == 422


def test_functions_list_their_definitions(served: Served) -> None:
    status, body = get(served, "/api/v1/functions", "read")
    by_name = {f["name"]: f for f in body["functions"]}
    assert status == 200 and set(by_name) == {"greet", "explode", "ordered", "child", "parent"}
    greet = by_name["greet"]["definition"]
    assert greet["events"] == ["user.created"] and greet["retries"] == 0 and by_name["greet"]["retired_at"] is None
    assert by_name["ordered"]["definition"]["flow"]["ordering_key"] == "event.data.k"
    assert len(by_name["greet"]["version"]) > 8, "the definition's version hash"


def test_ordering_keys_pause_resume_drain_skip(served: Served) -> None:
    post(served, "/api/v1/events", [{"name": "ordered", "data": {"k": "a"}} for _ in range(3)])
    key = {"function": "ordered", "key": "a"}
    assert post(served, "/api/v1/ordering-keys/pause", key, "operate") == (
        200,
        {"function": "ordered", "key": "a", "action": "pause"},
    )
    served.drain(seconds=1)
    assert {r.status for r in served.app.runs(function="ordered")} == {"queued"}, "a paused key starts nothing"
    assert post(served, "/api/v1/ordering-keys/resume", key)[0] == 200
    status, body = post(served, "/api/v1/ordering-keys/drain", key)
    assert status == 200 and len(body["cancelled"]) == 3
    assert post(served, "/api/v1/ordering-keys/skip", key)[1] == {"parked": False, "next_run_id": None}
    status, body = post(served, "/api/v1/ordering-keys/pause", {"function": "nope", "key": "a"})
    assert status == 404 and body["code"] == "not_found"


def test_functions_pause_and_resume(served: Served) -> None:
    status, body = post(served, "/api/v1/functions/pause", {"function": "greet"}, "operate")
    assert (status, body["function"], body["paused"]) == (200, "greet", True)
    paused_at = body["paused_at"]
    assert post(served, "/api/v1/functions/pause", {"function": "greet"})[1]["paused_at"] == paused_at, "idempotent"
    _, sent = post(served, "/api/v1/events", {"name": "user.created", "data": {"name": "ada"}}, "ingest")
    served.drain(seconds=1)
    [run] = served.app.runs(event_id=sent["id"])
    _, shown = get(served, f"/api/v1/runs/{run.id}", "read")
    assert (shown["status"], shown["waiting_reason"]) == ("queued", "function greet is paused")
    _, listed = get(served, "/api/v1/functions", "read")
    assert {f["name"]: f["paused_at"] for f in listed["functions"]}["greet"] == paused_at
    assert post(served, "/api/v1/functions/resume", {"function": "greet"}, "operate") == (
        200,
        {"function": "greet", "paused": False, "paused_at": None},
    )
    served.drain()
    assert served.app.get_run(run.id).status.value == "completed"
    status, body = post(served, "/api/v1/functions/pause", {"function": "nope"})
    assert status == 404 and body["code"] == "not_found"
    status, body = post(served, "/api/v1/functions/pause", {"name": "greet"})
    assert status == 422 and body["field"] in ("name", "function")


def test_fan_out_progress(served: Served) -> None:
    _, sent = post(served, "/api/v1/events", {"name": "fan"})
    served.drain()
    [parent] = served.app.runs(event_id=sent["id"])
    status, body = get(served, f"/api/v1/runs/{parent.id}/fan-out", "read", step="kids")
    assert status == 200 and (body["total"], body["completed"], body["done"]) == (3, 3, True)


def test_tokens_are_created_listed_and_revoked_over_http(served: Served) -> None:
    status, created = post(served, "/api/v1/tokens", {"name": "billing", "scopes": ["ingest"]})
    assert status == 201 and created["token"].startswith("sw_") and created["scopes"] == ["ingest"]
    _, listed = get(served, "/api/v1/tokens")
    assert "billing" in [t["name"] for t in listed["tokens"]] and all("token" not in t for t in listed["tokens"])
    send = {"Authorization": f"Bearer {created['token']}"}
    assert served.http.post("/api/v1/events", json={"name": "x"}, headers=send).status_code == 202
    assert served.http.delete(f"/api/v1/tokens/{created['id']}", headers=served.headers()).json() == {"revoked": True}
    refused = served.http.post("/api/v1/events", json={"name": "x"}, headers=send)
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"


def test_the_openapi_document_is_served_and_covers_every_route(served: Served) -> None:
    from stepwell.http.routes import ROUTES

    doc = served.http.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    for route in ROUTES:
        path = route.path.replace(":path", "")
        assert route.method.lower() in doc["paths"][path], (route.method, path)
