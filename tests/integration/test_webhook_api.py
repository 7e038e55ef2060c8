"""Webhook routes of the API with a real dispatcher, nats-server, PostgreSQL and receivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import standardwebhooks
from aiohttp import web

from arforge.api.testing import api_settings, new_tenant_key, running_api
from arforge.webhooks.receiver import Receiver
from arforge.webhooks.signing import verify
from arforge.webhooks.testing import fast_settings as hook_settings
from arforge.webhooks.testing import running_dispatcher


@pytest.fixture
async def api(nats_server, fresh_db: str, tmp_path: Path) -> AsyncIterator:
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    async with running_api(settings) as (app, client):
        app.state.webhook_settings = hook_settings()
        yield app, client


async def _wait_status(client, headers, mid: str, status: str, attempts: int = 1) -> dict:
    for _ in range(100):
        r = await client.get(f"/v1/webhook-deliveries/{mid}", headers=headers)
        assert r.status_code == 200, r.text
        d = r.json()
        if d["status"] == status and len(d["attempt_log"]) >= attempts:
            return d
        await asyncio.sleep(0.1)
    raise AssertionError(f"delivery {mid} did not reach {status}: {d}")


async def test_subscription_crud_secret_once_and_validation(api) -> None:
    app, client = api
    h = await new_tenant_key(app)
    r = await client.post(
        "/v1/webhooks",
        json={"url": "https://example.com/hook", "event_types": ["processing.*"]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["secret"].startswith("whsec_") and sub["enabled"] is True
    sid = sub["id"]
    got = (await client.get(f"/v1/webhooks/{sid}", headers=h)).json()
    assert "secret" not in got and got["event_types"] == ["processing.*"]

    r = await client.patch(
        f"/v1/webhooks/{sid}",
        json={"event_types": ["processing.completed", "ar_code.scanned"], "enabled": False},
        headers=h,
    )
    assert r.status_code == 200
    assert r.json()["enabled"] is False and r.json()["disabled_reason"] == "manual"
    r = await client.patch(f"/v1/webhooks/{sid}", json={"enabled": True}, headers=h)
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None

    # unknown fields and non-boolean "enabled" are refused, and change nothing
    for bad in ({"bogus": 1}, {"enabled": "yes"}, {"enabled": 1}, {"enabled": "true"}):
        r = await client.patch(f"/v1/webhooks/{sid}", json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    assert (await client.get(f"/v1/webhooks/{sid}", headers=h)).json()["enabled"] is True
    for bad in (
        {"url": "https://example.com/h", "event_types": ["*"], "secret": "whsec_mine"},
        {"url": "https://example.com/h", "event_types": ["*"], "enabled": "no"},
    ):
        r = await client.post("/v1/webhooks", json=bad, headers=h)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    r = await client.post(f"/v1/webhooks/{sid}/rotate-secret", json={"overlap": 5}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text

    for bad, code in [
        ({"url": "https://example.com", "event_types": ["job.completed"]}, "validation_error"),
        ({"url": "https://example.com", "event_types": []}, "validation_error"),
        ({"url": "ftp://example.com/x", "event_types": ["*"]}, "invalid_url"),
        ({"url": "http://169.254.169.254/", "event_types": ["*"]}, "url_not_allowed"),
    ]:
        r = await client.post("/v1/webhooks", json=bad, headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == code

    for i in range(3):
        await client.post(
            "/v1/webhooks",
            json={"url": f"https://example.com/{i}", "event_types": ["*"]},
            headers=h,
        )
    page1 = (await client.get("/v1/webhooks?limit=3", headers=h)).json()
    page2 = (
        await client.get(f"/v1/webhooks?limit=3&cursor={page1['next_cursor']}", headers=h)
    ).json()
    ids = [s["id"] for s in page1["items"] + page2["items"]]
    assert len(ids) == 4 and len(set(ids)) == 4 and page2["next_cursor"] is None

    assert (await client.delete(f"/v1/webhooks/{sid}", headers=h)).status_code == 204
    r = await client.get(f"/v1/webhooks/{sid}", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_private_urls_rejected_unless_allowed(api) -> None:
    app, client = api
    h = await new_tenant_key(app)
    app.state.webhook_settings = hook_settings(allow_private_targets=False)
    for url in ["http://127.0.0.1:9000/", "http://2130706433/", "http://[::ffff:10.0.0.1]/"]:
        r = await client.post("/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=h)
        assert r.status_code == 422 and r.json()["error"]["code"] == "url_not_allowed", url


async def test_tenant_isolation(api) -> None:
    app, client = api
    ha, hb = await new_tenant_key(app), await new_tenant_key(app)
    sid = (
        await client.post(
            "/v1/webhooks", json={"url": "https://a.example/h", "event_types": ["*"]}, headers=ha
        )
    ).json()["id"]
    for method, path, body in [
        ("GET", f"/v1/webhooks/{sid}", None),
        ("PATCH", f"/v1/webhooks/{sid}", {"description": "x"}),
        ("DELETE", f"/v1/webhooks/{sid}", None),
        ("POST", f"/v1/webhooks/{sid}/rotate-secret", {}),
        ("POST", f"/v1/webhooks/{sid}/test", None),
        ("POST", f"/v1/webhooks/{sid}/redeliver-failed", {"since": "2020-01-01T00:00:00Z"}),
        ("GET", "/v1/webhook-deliveries/msg_nope", None),
        ("POST", "/v1/webhook-deliveries/msg_nope/redeliver", None),
    ]:
        r = await client.request(method, path, json=body, headers=hb)
        assert r.status_code == 404, (method, path, r.text)
    assert (await client.get("/v1/webhooks", headers=hb)).json()["items"] == []
    # A's test delivery is not visible to B
    mid = (await client.post(f"/v1/webhooks/{sid}/test", headers=ha)).json()["message_id"]
    assert (await client.get(f"/v1/webhook-deliveries/{mid}", headers=hb)).status_code == 404
    assert (await client.get("/v1/webhook-deliveries", headers=hb)).json()["items"] == []
    assert len((await client.get("/v1/webhook-deliveries", headers=ha)).json()["items"]) == 1
    assert (await client.get("/v1/webhooks", headers={})).status_code == 401


async def test_test_event_rotation_redeliver_and_listing(api, fresh_db: str) -> None:
    app, client = api
    h = await new_tenant_key(app)
    async with Receiver() as recv:
        r = await client.post(
            "/v1/webhooks",
            json={"url": f"{recv.url}/hook", "event_types": ["processing.*"]},
            headers=h,
        )
        sid, old = r.json()["id"], r.json()["secret"]
        pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=5)
        try:
            async with running_dispatcher(pool, hook_settings(), bus=app.state.bus):
                mid = (await client.post(f"/v1/webhooks/{sid}/test", headers=h)).json()[
                    "message_id"
                ]
                d = await _wait_status(client, h, mid, "succeeded")
                assert d["event_type"] == "webhook.test" and d["payload"]["type"] == "webhook.test"
                a = d["attempt_log"][0]
                assert a["status_code"] == 200 and a["succeeded"] and a["latency_ms"] >= 0
                first = recv.received[0]
                assert standardwebhooks.Webhook(old).verify(first.body, first.headers)

                # rotation: both signatures during the overlap
                r = await client.post(
                    f"/v1/webhooks/{sid}/rotate-secret", json={"overlap_s": 3600}, headers=h
                )
                new = r.json()["secret"]
                assert new != old
                mid2 = (await client.post(f"/v1/webhooks/{sid}/test", headers=h)).json()[
                    "message_id"
                ]
                await _wait_status(client, h, mid2, "succeeded")
                rotated = recv.received[1]
                assert len(rotated.headers["webhook-signature"].split(" ")) == 2
                verify(rotated.headers, rotated.body, old)
                verify(rotated.headers, rotated.body, new)
                standardwebhooks.Webhook(old).verify(rotated.body, rotated.headers)
                standardwebhooks.Webhook(new).verify(rotated.body, rotated.headers)

                # redeliver one: same webhook-id, same bytes, a second attempt
                r = await client.post(f"/v1/webhook-deliveries/{mid}/redeliver", headers=h)
                assert r.status_code == 202
                d = await _wait_status(client, h, mid, "succeeded", attempts=2)
                assert [x["attempt"] for x in d["attempt_log"]] == [1, 2]
                again = recv.received[2]
                assert again.headers["webhook-id"] == mid and again.body == first.body

                # listing with filters and cursor pagination
                lst = (
                    await client.get(
                        "/v1/webhook-deliveries?limit=1&event_type=webhook.test", headers=h
                    )
                ).json()
                assert len(lst["items"]) == 1 and lst["next_cursor"]
                nxt = (
                    await client.get(
                        f"/v1/webhook-deliveries?limit=1&cursor={lst['next_cursor']}", headers=h
                    )
                ).json()
                assert {lst["items"][0]["id"], nxt["items"][0]["id"]} == {mid, mid2}
                q = "/v1/webhook-deliveries?status=failed"
                assert (await client.get(q, headers=h)).json()["items"] == []
                future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
                r = await client.get("/v1/webhook-deliveries", params={"since": future}, headers=h)
                assert r.json()["items"] == []
                r = await client.get(f"/v1/webhook-deliveries?subscription_id={sid}", headers=h)
                assert len(r.json()["items"]) == 2
        finally:
            await pool.close()


async def test_redeliver_failed_since_and_platform_events(api, fresh_db: str) -> None:
    app, client = api
    h = await new_tenant_key(app)
    healthy = False

    async def maybe(request, rec):
        return web.Response(status=200 if healthy else 503)

    async with Receiver(handlers={"/hook": maybe}) as recv:
        sid = (
            await client.post(
                "/v1/webhooks",
                json={"url": f"{recv.url}/hook", "event_types": ["ar_code.*"]},
                headers=h,
            )
        ).json()["id"]
        start = datetime.now(UTC) - timedelta(seconds=5)
        pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=5)
        try:
            async with running_dispatcher(pool, hook_settings(max_attempts=1), bus=app.state.bus):
                ids = []
                for i in range(3):
                    r = await client.post(
                        "/v1/events",
                        json={"type": "ar_code.scanned", "subject": f"code-{i}", "data": {"n": i}},
                        headers=h,
                    )
                    assert r.status_code == 202, r.text
                    ids.append(r.json()["id"])
                await recv.wait_for(3, timeout=10)
                for _ in range(50):
                    failed = (
                        await client.get("/v1/webhook-deliveries?status=failed", headers=h)
                    ).json()["items"]
                    if len(failed) == 3:
                        break
                    await asyncio.sleep(0.1)
                assert len(failed) == 3
                healthy = True
                r = await client.post(
                    f"/v1/webhooks/{sid}/redeliver-failed",
                    json={"since": start.isoformat()},
                    headers=h,
                )
                assert r.json() == {"count": 3}
                await recv.wait_for(6, timeout=10)
                for f in failed:
                    await _wait_status(client, h, f["id"], "succeeded", attempts=2)
        finally:
            await pool.close()
    import json

    first = [json.loads(r.body) for r in recv.received[:3]]
    assert sorted(p["subject"] for p in first) == ["code-0", "code-1", "code-2"]
    assert all(p["type"] == "ar_code.scanned" and "tenant_id" not in p["data"] for p in first)
    assert {r.body for r in recv.received[3:]} == {r.body for r in recv.received[:3]}
    r = await client.post(
        "/v1/events", json={"type": "processing.completed", "subject": "x"}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_event_type"


async def test_platform_event_idempotency_key(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api[0], api[1]
    h = await new_tenant_key(app)
    body = {
        "type": "ar_code.scanned",
        "subject": "code-7",
        "data": {"n": 1},
        "idempotency_key": "scan-7",
    }
    first = await client.post("/v1/events", json=body, headers=h)
    again = await client.post("/v1/events", json=body, headers=h)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    other = await client.post("/v1/events", json={**body, "data": {"n": 2}}, headers=h)
    assert other.status_code == 409, other.text
    err = other.json()["error"]
    assert err["code"] == "idempotency_conflict"
    assert err["details"] == {"event_id": first.json()["id"]}
    # one event stored: the first
    info = await app.state.bus.js.stream_info("EVENTS")
    assert info.state.messages == 1
    # another tenant's same key is its own event
    h2 = await new_tenant_key(app)
    third = await client.post("/v1/events", json={**body, "data": {"n": 2}}, headers=h2)
    assert third.status_code == 202 and third.json()["id"] != first.json()["id"]
