"""Standard-Webhooks signatures: what is accepted and what is refused, with the reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from stepwell.errors import StepwellError
from stepwell.push.signing import SignatureError, Signer, Verifier, decode_key, new_key, parse_keys

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
        ({**signed([OLD]), "webhook-signature": "v2,abc"}, BODY, "no signature matches"),
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
