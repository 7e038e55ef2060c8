"""Standard Webhooks signing: official vectors, the independent library, strict verify."""

from __future__ import annotations

import base64
import json
import time

import pytest
import standardwebhooks

from arforge.webhooks.signing import (
    WebhookVerificationError,
    generate_secret,
    secret_key,
    sign,
    signature_header,
    verify,
    webhook_headers,
)
from tests.conftest import CASES

VECTORS = json.loads((CASES / "webhook-vectors.json").read_text())


@pytest.mark.parametrize("v", VECTORS["v1_sign"], ids=lambda v: v["msg_id"])
def test_official_vectors_sign(v: dict) -> None:
    got = sign(v["msg_id"], v["timestamp"], v["payload"].encode(), v["secret"])
    assert got == v["expected"]


@pytest.mark.parametrize("v", VECTORS["v1_sign"], ids=lambda v: v["msg_id"])
def test_official_vectors_verify(v: dict) -> None:
    headers = {
        "webhook-id": v["msg_id"],
        "webhook-timestamp": str(v["timestamp"]),
        "webhook-signature": v["expected"],
    }
    out = verify(headers, v["payload"].encode(), v["secret"], now=v["timestamp"] + 10)
    assert out.id == v["msg_id"] and out.body == v["payload"]


def test_official_must_not_verify() -> None:
    for bad in VECTORS["v1_must_not_verify"]:
        v = VECTORS["v1_sign"][bad["based_on"]]
        headers = {
            "webhook-id": v["msg_id"],
            "webhook-timestamp": str(v["timestamp"]),
            "webhook-signature": bad["signature"],
        }
        with pytest.raises(WebhookVerificationError) as e:
            verify(headers, v["payload"].encode(), v["secret"], now=v["timestamp"])
        assert e.value.code == "no_matching_signature"


def test_generated_secret_shape_and_independent_library_agrees() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:], validate=True)) == 32
    body = '{"type":"processing.completed","data":{"x":"é"}}'.encode()
    ts = int(time.time())
    headers = webhook_headers("msg_abc", ts, body, [secret])
    # The standardwebhooks package (an independent implementation) accepts our headers.
    payload = standardwebhooks.Webhook(secret).verify(body, headers)
    assert payload["data"]["x"] == "é"
    # ... and we accept its signature.
    theirs = standardwebhooks.Webhook(secret).sign("msg_abc", _dt(ts), body.decode())
    assert theirs == headers["webhook-signature"]


def _dt(ts: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, tz=UTC)


def _ok_headers(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    return webhook_headers("msg_1", ts if ts is not None else int(time.time()), body, [secret])


def test_rotation_header_has_two_signatures_each_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"a":1}'
    ts = int(time.time())
    header = signature_header("msg_r", ts, body, [new, old])
    assert len(header.split(" ")) == 2
    h = {"webhook-id": "msg_r", "webhook-timestamp": str(ts), "webhook-signature": header}
    verify(h, body, new)
    verify(h, body, old)
    with pytest.raises(WebhookVerificationError):
        verify(h, body, generate_secret())


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h: h.pop("webhook-id"), "missing_header"),
        (lambda h: h.pop("webhook-signature"), "missing_header"),
        (lambda h: h.update({"webhook-timestamp": "1.5"}), "invalid_timestamp"),
        (lambda h: h.update({"webhook-timestamp": str(time.time())}), "invalid_timestamp"),
        (lambda h: h.update({"webhook-timestamp": "-5"}), "invalid_timestamp"),
        (lambda h: h.update({"webhook-timestamp": " 1"}), "invalid_timestamp"),
        (lambda h: h.update({"webhook-timestamp": "abc"}), "invalid_timestamp"),
        (
            lambda h: h.update({"webhook-timestamp": str(int(time.time()) - 301)}),
            "timestamp_too_old",
        ),
        (
            lambda h: h.update({"webhook-timestamp": str(int(time.time()) + 301)}),
            "timestamp_too_new",
        ),
        (lambda h: h.update({"webhook-signature": "garbage"}), "malformed_header"),
        (lambda h: h.update({"webhook-signature": "v1a,abc"}), "malformed_header"),
        (lambda h: h.update({"webhook-signature": "v1,not base64!"}), "malformed_header"),
        (lambda h: h.update({"webhook-id": ""}), "malformed_header"),
    ],
)
def test_verify_rejects_malformed(mutate, code: str) -> None:
    secret = generate_secret()
    body = b'{"ok":true}'
    h = _ok_headers(secret, body)
    mutate(h)
    with pytest.raises(WebhookVerificationError) as e:
        verify(h, body, secret)
    assert e.value.code == code
    assert str(e.value).startswith(code)


def test_verify_rejects_non_utf8_body_and_tampering() -> None:
    secret = generate_secret()
    body = b"\xff\xfe{}"
    h = _ok_headers(secret, body)
    with pytest.raises(WebhookVerificationError) as e:
        verify(h, body, secret)
    assert e.value.code == "invalid_body"
    good = b'{"n":1}'
    h = _ok_headers(secret, good)
    verify(h, good, secret)
    with pytest.raises(WebhookVerificationError) as e:
        verify(h, b'{"n": 1}', secret)  # re-serialised JSON is a different body
    assert e.value.code == "no_matching_signature"


def test_verify_headers_case_insensitive_and_unknown_versions_ignored() -> None:
    secret = generate_secret()
    body = b"{}"
    h = _ok_headers(secret, body)
    mixed = {
        "Webhook-Id": h["webhook-id"],
        "WEBHOOK-TIMESTAMP": h["webhook-timestamp"],
        "Webhook-Signature": "v1a,AAAA " + h["webhook-signature"],
    }
    assert verify(mixed, body, secret).id == "msg_1"


def test_bad_secret_is_clear() -> None:
    with pytest.raises(WebhookVerificationError) as e:
        secret_key("whsec_***")
    assert e.value.code == "invalid_secret"
