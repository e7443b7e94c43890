"""Standard-Webhooks signatures: what is accepted and what is refused, with the reason; the ids an
endpoint remembers against replays (finding P1 of the review of 2026-11-29) and the dispatcher's
refusal of an answer signed for another request (finding P2)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from stepwell.errors import StepwellError
from stepwell.model.records import Event
from stepwell.push import protocol
from stepwell.push.delivery import EndpointFailed, Transport
from stepwell.push.guard import Guard
from stepwell.push.seen import SeenIds
from stepwell.push.signing import SignatureError, Signer, Verifier, decode_key, new_key, parse_keys
from stepwell.store.base import ClaimedRun, Lease

NOW = datetime(2030, 1, 1, tzinfo=UTC)
BODY = b'{"protocol":"stepwell.push/1","run":{"id":"r1"}}'
OLD, NEW, OTHER = new_key(), new_key(), new_key()


def signed(keys: list[str], body: bytes = BODY, at: datetime = NOW) -> dict[str, str]:
    return Signer(parse_keys(keys)).headers("msg_1", body, at)


def verifier(*keys: str) -> Verifier:
    return Verifier(parse_keys(list(keys)))


def test_a_signature_is_the_standard_webhooks_hmac_over_id_timestamp_body() -> None:
    headers = signed([OLD])
    key = base64.b64decode(OLD.removeprefix("whsec_"))
    mac = hmac.new(key, b"msg_1." + str(int(NOW.timestamp())).encode() + b"." + BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    assert verifier(OLD).verify(headers, BODY, NOW) == "msg_1"


def test_within_five_minutes_either_way_is_accepted() -> None:
    assert verifier(OLD).verify(signed([OLD], at=NOW - timedelta(minutes=4, seconds=59)), BODY, NOW)
    assert verifier(OLD).verify(signed([OLD], at=NOW + timedelta(minutes=4, seconds=59)), BODY, NOW)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (signed([OLD], at=NOW - timedelta(minutes=6)), BODY, "too old"),
        (signed([OLD], at=NOW + timedelta(minutes=6)), BODY, "from the future"),
        (signed([OTHER]), BODY, "no signature matches"),
        (signed([OLD]), BODY[:-2] + b"x}", "no signature matches"),  # one byte changed
        ({k: v for k, v in signed([OLD]).items() if k != "webhook-signature"}, BODY, "missing header"),
        ({k: v for k, v in signed([OLD]).items() if k != "webhook-timestamp"}, BODY, "missing header"),
        ({**signed([OLD]), "webhook-timestamp": "soon"}, BODY, "not whole seconds"),
        ({**signed([OLD]), "webhook-signature": "v2,abc"}, BODY, "holds no 'v1,<base64>' signature"),
        ({**signed([OLD]), "webhook-id": "msg_2"}, BODY, "no signature matches"),  # the id is signed too
    ],
    ids=[
        "stale",
        "future",
        "wrong-key",
        "one-byte-changed",
        "no-signature",
        "no-timestamp",
        "bad-timestamp",
        "unknown-version",
        "other-id",
    ],
)
def test_refusals_name_the_reason(headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verifier(OLD).verify(headers, body, NOW)


def test_rotation_the_old_and_the_new_key_are_both_accepted_while_both_are_configured() -> None:
    rotating = verifier(OLD, NEW)
    assert rotating.verify(signed([OLD]), BODY, NOW)
    assert rotating.verify(signed([NEW]), BODY, NOW)
    both = signed([OLD, NEW])  # a signer that rotates signs with both: either verifier accepts it
    assert verifier(OLD).verify(both, BODY, NOW) and verifier(NEW).verify(both, BODY, NOW)
    with pytest.raises(SignatureError):
        verifier(NEW).verify(signed([OLD]), BODY, NOW)


def test_no_key_configured_fails_closed_unless_development() -> None:
    with pytest.raises(SignatureError, match="no push signing key"):
        Verifier(()).verify({}, BODY, NOW)
    with pytest.raises(SignatureError, match="no push signing key"):
        Verifier(()).verify(signed([OLD]), BODY, NOW)
    assert Verifier.dev().verify({}, BODY, NOW) == ""
    with pytest.raises(SignatureError, match="nothing to sign"):
        Signer(()).headers("m", BODY, NOW)


def test_keys_are_whsec_base64_or_plain_text() -> None:
    assert decode_key("whsec_" + base64.b64encode(b"secret").decode()) == b"secret"
    assert decode_key("plain") == b"plain"
    assert parse_keys("a, b c") == (b"a", b"b", b"c")
    for bad in ("", "   ", "whsec_***"):
        with pytest.raises(StepwellError):
            decode_key(bad)


def test_an_id_is_remembered_for_the_time_it_keeps_and_then_forgotten() -> None:
    seen = SeenIds(timedelta(minutes=10))
    assert seen.first_time("msg_1", NOW)
    assert not seen.first_time("msg_1", NOW + timedelta(minutes=9, seconds=59))
    assert seen.first_time("msg_2", NOW + timedelta(minutes=5))
    assert seen.first_time("msg_1", NOW + timedelta(minutes=10, seconds=1))  # a signature that old is refused anyway
    assert not seen.first_time("msg_2", NOW + timedelta(minutes=10, seconds=1))


def test_the_remembered_ids_are_bounded_the_oldest_forgotten_first() -> None:
    seen = SeenIds(timedelta(minutes=10), capacity=3)
    for number in range(5):
        assert seen.first_time(f"msg_{number}", NOW)
    assert len(seen) == 3
    assert seen.first_time("msg_0", NOW)  # forgotten early: past the capacity
    assert not seen.first_time("msg_4", NOW)
    with pytest.raises(ValueError, match="capacity"):
        SeenIds(timedelta(minutes=10), capacity=0)


def test_remembering_ids_from_many_threads_admits_each_id_once() -> None:
    seen = SeenIds(timedelta(minutes=10))
    admitted: list[str] = []

    def send() -> None:
        for number in range(500):
            if seen.first_time(f"msg_{number}", NOW):
                admitted.append(f"msg_{number}")

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(admitted) == sorted(f"msg_{number}" for number in range(500))


class _Recorded(BaseHTTPRequestHandler):
    """An endpoint that answers every request with one recorded, genuinely signed answer."""

    answer: tuple[dict[str, str], bytes] = ({}, b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        headers, body = self.answer
        self.send_response(200)
        for name, value in {**headers, "content-type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None: ...


@pytest.fixture
def recorded() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/push"
    server.shutdown()
    server.server_close()


def test_the_dispatcher_refuses_a_signed_answer_to_another_request(recorded: str) -> None:
    """P2: a genuinely signed answer recorded for an earlier request, replayed by anyone on the path,
    does not settle the run: the attempt fails with an error naming the mismatch."""
    keys = parse_keys(NEW)
    now = datetime.now(UTC)
    answer = protocol.encode_response(protocol.PushResponse((), protocol.Completed(b'"forged"')))
    _Recorded.answer = (Signer(keys).headers("msg_an_earlier_request", answer, now), answer)
    claimed = ClaimedRun(
        Lease("run-review", "token-1", now + timedelta(seconds=30)), "score", 1, 2,
        Event("e-review", "x", {"n": 4}, now), now,
    )  # fmt: skip

    async def push() -> protocol.PushResponse:
        async with httpx.AsyncClient(trust_env=False) as client:
            transport = Transport(client, Guard(allow_loopback=True), Signer(keys), Verifier(keys), 1 << 20)
            return await transport.post(
                recorded, protocol.encode_request(protocol.PushRequest(claimed)), "run-review", now
            )

    with pytest.raises(EndpointFailed, match=r"signed for another request .*msg_an_earlier_request"):
        asyncio.run(push())
