"""The server's observability: /metrics behind a read key, ctx.log lines in a run's detail, and an
incoming `traceparent` made the parent of the `send` span (real server, both stores)."""

from __future__ import annotations

import stepwell
from tests.http.conftest import Served
from tests.observe_helpers import named, span_exporter


def _started(served: Served) -> float:
    response = served.http.get(f"{served.url}/metrics", headers=served.headers("read"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    prefix = 'stepwell_events_received_total{disposition="started",event="user.created"} '
    return sum(float(line.removeprefix(prefix)) for line in response.text.splitlines() if line.startswith(prefix))


def test_metrics_need_a_read_key_and_count_what_the_server_ingested(served: Served) -> None:
    assert served.http.get(f"{served.url}/metrics").status_code == 401
    assert served.http.get(f"{served.url}/metrics", headers=served.headers("ingest")).status_code == 403
    before = _started(served)
    for _ in range(3):
        served.http.post(f"{served.url}/api/v1/events", json={"name": "user.created"}, headers=served.headers())
    assert _started(served) - before == 3


def test_a_runs_detail_carries_its_ctx_log_lines(serve: object) -> None:
    served: Served = serve()  # type: ignore[operator]

    @served.app.function("chatty", trigger=stepwell.on_event("chat"), retries=0)
    def chatty(ctx: stepwell.Context) -> None:
        ctx.log.info("hello <b>%s</b>", ctx.event.data["who"])

    served.app.register()
    sent = served.http.post(
        f"{served.url}/api/v1/events", json={"name": "chat", "data": {"who": "ada"}}, headers=served.headers()
    )
    [run] = served.app.runs(event_id=sent.json()["id"])
    served.drain()
    body = served.http.get(f"{served.url}/api/v1/runs/{run.id}", headers=served.headers("read")).json()
    assert [(line["level"], line["message"]) for line in body["logs"]] == [("INFO", "hello <b>ada</b>")]
    assert body["logs_dropped"] == 0


def test_an_incoming_traceparent_is_the_parent_of_the_send_span(served: Served) -> None:
    exporter = span_exporter()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {**served.headers(), "traceparent": traceparent}
    response = served.http.post(f"{served.url}/api/v1/events", json={"name": "user.created"}, headers=headers)
    assert response.status_code == 202
    [span] = named(exporter.get_finished_spans(), "send user.created")
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent.span_id == 0xB7AD6B7169203331
