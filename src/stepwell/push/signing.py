"""Standard-Webhooks signatures, both ways: the dispatcher signs requests, the endpoint signs responses.

`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under each configured key
(several at once while a key is being rotated: the signer signs with all of them, the verifier
accepts any). The timestamp must be within `tolerance` of now in both directions, so a captured
request cannot be replayed later and a clock far ahead is noticed. The signature covers the raw
bytes, exactly as received: verify before parsing, never a re-serialised body.

Keys are `whsec_<base64>` (the Standard-Webhooks form) or any other string, used as its UTF-8
bytes. With no key at all, `Verifier` refuses everything unless it was made for development
(`Verifier.dev()`), which accepts unsigned requests; the adapters allow that only on loopback.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from stepwell.errors import StepwellError

TOLERANCE = timedelta(minutes=5)
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


class SignatureError(StepwellError):
    """The push request or response is not signed by a configured key; it was refused unread."""


def decode_key(key: str) -> bytes:
    """`whsec_<base64>` decodes to its bytes; any other non-empty string is used as its UTF-8 bytes."""
    if not isinstance(key, str) or not key.strip():
        raise StepwellError("a push signing key must be a non-empty string")
    if key.startswith("whsec_"):
        try:
            return base64.b64decode(key.removeprefix("whsec_"), validate=True)
        except binascii.Error as error:
            raise StepwellError("a push signing key starting with 'whsec_' must be base64 after the prefix") from error
    return key.encode()


def new_key() -> str:
    """A fresh random key in the Standard-Webhooks form (`whsec_` + 32 random bytes, base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_keys(text: str | Sequence[str] | None) -> tuple[bytes, ...]:
    """Keys from configuration: a sequence, or one string with keys separated by commas or spaces."""
    if text is None:
        return ()
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    return tuple(decode_key(item) for item in items)


def _sign_one(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@dataclass(frozen=True, slots=True)
class Signer:
    keys: tuple[bytes, ...]

    def headers(self, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
        """The three headers for `body`; every key signs (space-separated), so a verifier that
        knows only the old or only the new key during a rotation accepts it."""
        if not self.keys:
            raise SignatureError("no push signing key is configured: nothing to sign with")
        timestamp = int(now.timestamp())
        signatures = " ".join(_sign_one(key, message_id, timestamp, body) for key in self.keys)
        return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signatures}


@dataclass(frozen=True, slots=True)
class Verifier:
    keys: tuple[bytes, ...]
    tolerance: timedelta = TOLERANCE
    allow_unsigned: bool = False  # development only: the adapters refuse it off loopback

    @classmethod
    def dev(cls) -> Verifier:
        return cls((), allow_unsigned=True)

    def precheck(self, headers: Mapping[str, str], now: datetime) -> str:
        """Everything that can be checked before the body is read: a key is configured, the three
        headers are present and well-formed, the timestamp is within the tolerance. Returns the
        message id; raises SignatureError. An unsigned or stale request is refused here, so the
        endpoint never buffers the body of a request it would refuse anyway."""
        message_id = headers.get(ID_HEADER)
        stamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not self.keys:
            if self.allow_unsigned:
                return message_id or ""
            raise SignatureError("no push signing key is configured: refusing every request (set STEPWELL_SIGNING_KEY)")
        if not message_id or not stamp or not signature:
            missing = [name for name, value in _named(message_id, stamp, signature) if not value]
            raise SignatureError(f"missing header(s): {', '.join(missing)}")
        try:
            sent = int(stamp)
        except ValueError:
            raise SignatureError(f"{TIMESTAMP_HEADER} {stamp[:40]!r} is not whole seconds since the epoch") from None
        skew = now.timestamp() - sent
        if skew > self.tolerance.total_seconds():
            raise SignatureError(f"signature too old: signed {skew:.0f}s ago (tolerance {self.tolerance})")
        if -skew > self.tolerance.total_seconds():
            raise SignatureError(f"signature from the future: {-skew:.0f}s ahead (tolerance {self.tolerance})")
        if not _offered(signature):
            raise SignatureError(f"{SIGNATURE_HEADER} holds no 'v1,<base64>' signature")
        return message_id

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> str:
        """Check the headers against the raw `body`; returns the message id. Raises SignatureError.

        `headers` must be looked up case-insensitively (lower-case keys, or a mapping that folds)."""
        message_id = self.precheck(headers, now)
        if not self.keys:
            return message_id
        sent = int(headers.get(TIMESTAMP_HEADER) or 0)  # well-formed: the precheck said so
        expected = [_sign_one(key, message_id, sent, body) for key in self.keys]
        for candidate in _offered(headers.get(SIGNATURE_HEADER) or ""):
            for good in expected:
                if hmac.compare_digest(candidate.encode(), good.encode()):
                    return message_id
        raise SignatureError("no signature matches a configured key (wrong key, or the body was changed)")


def _offered(signature: str) -> list[str]:
    return [part for part in signature.split() if part.startswith("v1,") and len(part) > 3]


def _named(message_id: str | None, stamp: str | None, signature: str | None) -> list[tuple[str, str | None]]:
    return [(ID_HEADER, message_id), (TIMESTAMP_HEADER, stamp), (SIGNATURE_HEADER, signature)]
