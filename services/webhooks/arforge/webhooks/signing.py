"""Standard Webhooks signatures: secrets, signing and a strict receiver-side ``verify``.

Spec: https://www.standardwebhooks.com/ (``spec/standard-webhooks.md``, symmetric "v1").
The signed content is ``f"{webhook-id}.{webhook-timestamp}.{body}"`` where ``body`` is the
exact bytes sent on the wire; the signature is ``v1,`` + base64(HMAC-SHA256(key, content))
and the key is the base64-decoded part of a ``whsec_...`` secret. During a secret
rotation several signatures are sent, separated by single spaces.

This module is pure (no I/O) so the API and users' receivers can import it alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as _secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # 256-bit keys; the spec allows 24..64 bytes
DEFAULT_TOLERANCE_S = 300
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_B64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class WebhookVerificationError(Exception):
    """A webhook failed verification; ``code`` says why in a machine-readable word.

    Codes: ``missing_header``, ``malformed_header``, ``invalid_timestamp``,
    ``timestamp_too_old``, ``timestamp_too_new``, ``invalid_body``, ``invalid_secret``,
    ``no_matching_signature``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class VerifiedWebhook:
    """What ``verify`` returns: the message id (for de-duplication), timestamp, body text."""

    id: str
    timestamp: int
    body: str


def generate_secret(nbytes: int = SECRET_BYTES) -> str:
    """A new signing secret: ``whsec_`` + base64 of ``nbytes`` random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


@lru_cache(maxsize=4096)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the prefix is optional).

    Raises WebhookVerificationError(``invalid_secret``) when the rest is not strict base64
    or decodes to nothing.
    """
    raw = secret.removeprefix(SECRET_PREFIX)
    if not raw or not _B64_RE.fullmatch(raw):
        raise WebhookVerificationError("invalid_secret", "secret is not whsec_ + base64")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookVerificationError("invalid_secret", f"secret is not base64: {exc}") from exc
    if not key:
        raise WebhookVerificationError("invalid_secret", "secret decodes to an empty key")
    return key


def sign(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """One ``v1,<base64>`` signature of ``body`` (the exact bytes sent) for ``msg_id``.

    ``timestamp`` is integer Unix seconds, the value of the ``webhook-timestamp`` header.
    """
    content = msg_id.encode("utf-8") + b"." + str(int(timestamp)).encode("ascii") + b"." + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    sigs = [sign(msg_id, timestamp, body, s) for s in secrets]
    if not sigs:
        raise ValueError("at least one secret is needed to sign")
    return " ".join(sigs)


def webhook_headers(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str]) -> dict:
    """The three Standard Webhooks headers for one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature_header(msg_id, timestamp, body, secrets),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value: str | None = None
    for k, v in headers.items():
        if k.lower() == name:
            if value is not None:
                raise WebhookVerificationError("malformed_header", f"{name} header repeated")
            value = v
    if value is None:
        raise WebhookVerificationError("missing_header", f"{name} header is missing")
    return value


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> VerifiedWebhook:
    """Check a received webhook strictly; return its id, timestamp and body text.

    ``headers``: any mapping (names matched case-insensitively); ``body``: the raw request
    bytes exactly as received; ``secret``: the subscription's ``whsec_...`` secret.
    The timestamp must be an integer number of seconds (no fraction, sign or spaces)
    within ``tolerance_s`` of ``now`` (default: the clock). The body must be UTF-8.
    Every ``v1`` signature in the header is compared in constant time; other versions
    are ignored as the spec requires. Raises WebhookVerificationError on any failure.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise WebhookVerificationError("invalid_body", "body must be the raw bytes received")
    body = bytes(body)
    msg_id = _header(headers, "webhook-id")
    ts_raw = _header(headers, "webhook-timestamp")
    sig_raw = _header(headers, "webhook-signature")

    if not msg_id or msg_id != msg_id.strip() or any(c in msg_id for c in " ,\r\n"):
        raise WebhookVerificationError("malformed_header", "webhook-id is empty or malformed")
    if not _TIMESTAMP_RE.fullmatch(ts_raw):
        raise WebhookVerificationError(
            "invalid_timestamp", f"webhook-timestamp must be integer seconds, got {ts_raw!r}"
        )
    timestamp = int(ts_raw)
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise WebhookVerificationError(
            "timestamp_too_old", f"webhook-timestamp is more than {tolerance_s} s in the past"
        )
    if timestamp > current + tolerance_s:
        raise WebhookVerificationError(
            "timestamp_too_new", f"webhook-timestamp is more than {tolerance_s} s in the future"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookVerificationError("invalid_body", f"body is not UTF-8: {exc}") from exc

    entries = sig_raw.split(" ")
    v1: list[bytes] = []
    for entry in entries:
        version, sep, value = entry.partition(",")
        if not sep or not version or not value:
            raise WebhookVerificationError(
                "malformed_header", f"webhook-signature entry {entry[:40]!r} is not version,value"
            )
        if version == "v1":
            if not _B64_RE.fullmatch(value):
                raise WebhookVerificationError("malformed_header", "a v1 signature is not base64")
            v1.append(value.encode("ascii"))
    if not v1:
        raise WebhookVerificationError("malformed_header", "webhook-signature has no v1 entry")

    expected = sign(msg_id, timestamp, body, secret).partition(",")[2].encode("ascii")
    matched = False
    for candidate in v1:  # compare all, constant time each
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookVerificationError(
            "no_matching_signature", "no v1 signature matches this secret"
        )
    return VerifiedWebhook(id=msg_id, timestamp=timestamp, body=text)
