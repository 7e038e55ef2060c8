"""Retry schedule, Retry-After parsing, public names, patterns and payload bytes."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from arforge.shared.contracts.events import Event, job_event
from arforge.webhooks.client import parse_retry_after
from arforge.webhooks.policy import RetrySchedule
from arforge.webhooks.public import (
    encode_body,
    matches,
    message_id,
    public_payload,
    public_type,
    validate_pattern,
)


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    s = RetrySchedule(max_attempts=5, initial_s=10, multiplier=3, max_s=50, jitter=0.2)
    rng = random.Random(1)
    for attempt, base in [(1, 10), (2, 30), (3, 50), (4, 50)]:
        d = [s.delay_after(attempt, rng=rng) for _ in range(200)]
        assert base * 0.8 <= min(d) and max(d) <= base * 1.2
        assert max(d) - min(d) > base * 0.1  # jitter really spreads
    assert s.has_next(4) and not s.has_next(5)
    assert RetrySchedule().max_attempts == 3


def test_retry_after_raises_delay_but_is_capped() -> None:
    s = RetrySchedule(initial_s=1, jitter=0, retry_after_cap_s=60)
    assert s.delay_after(1, retry_after_s=20) == 20
    assert s.delay_after(1, retry_after_s=10_000) == 60
    assert s.delay_after(1, retry_after_s=0.1) == 1


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120
    now = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:30 GMT", now=now) == 30
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_patterns() -> None:
    assert validate_pattern("processing.*") == "processing.*"
    assert validate_pattern("ar_code.scanned") == "ar_code.scanned"
    for bad in ["processing", "nope.*", "job.completed", "webhook.test", "processing.**"]:
        with pytest.raises(ValueError, match="unknown event type"):
            validate_pattern(bad)
    assert matches(["processing.*"], "processing.completed")
    assert matches(["*"], "ar_code.created")
    assert not matches(["processing.*"], "ar_code.created")
    # progress is opt-in by exact name only
    assert not matches(["processing.*", "*"], "processing.progress")
    assert matches(["processing.progress"], "processing.progress")


def _job(status: str, **data) -> Event:
    job = {"job_id": "9f1c", "type": "photogrammetry", "tenant_id": "t1", "run": 1}
    return job_event(status, job, source="test", attempt=1, **data)


def test_public_payload_and_names() -> None:
    done = _job("completed", result={"artifacts": [{"name": "model.glb", "key": "jobs/9f1c/m"}]})
    failed = _job("failed", error={"code": "too_few_images", "message": "need 3"})
    assert public_type(done) == "processing.completed"
    assert public_type(failed) == "processing.failed"
    assert public_type(_job("started")) is None
    p = public_payload(done, "processing.completed")
    assert p["type"] == "processing.completed" and p["data"]["job_id"] == "9f1c"
    assert p["data"]["artifacts"][0]["name"] == "model.glb"
    assert "tenant_id" not in p["data"]
    q = public_payload(failed, "processing.failed")
    assert q["data"]["error"]["code"] == "too_few_images"
    body = encode_body(p)
    assert json.loads(body) == json.loads(json.dumps(p, default=str))
    assert message_id(done.id, "s1") == message_id(done.id, "s1") != message_id(done.id, "s2")


def test_platform_payload_drops_tenant() -> None:
    ev = Event(
        id="e1",
        type="ar_code.scanned",
        time=datetime.now(UTC),
        source="x",
        subject="c1",
        data={"tenant_id": "t", "code_id": "c1", "country": "DE"},
    )
    assert public_payload(ev, "ar_code.scanned")["data"] == {"code_id": "c1", "country": "DE"}
