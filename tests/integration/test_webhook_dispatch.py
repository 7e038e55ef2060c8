"""The dispatcher against a real nats-server, real PostgreSQL and receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import standardwebhooks
from aiohttp import web

from arforge.shared.bus import Bus, connect
from arforge.shared.contracts.events import Event, job_event
from arforge.webhooks import store
from arforge.webhooks.receiver import Receiver
from arforge.webhooks.signing import verify
from arforge.webhooks.testing import (
    fast_settings,
    make_subscription,
    make_tenant,
    running_dispatcher,
)
from tests.conftest import REPO


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    from arforge.api.db import migrate

    await migrate(fresh_db)
    p = await store.create_pool(fresh_db, max_size=10)
    yield p
    await p.close()


@pytest.fixture
async def bus(nats_server) -> AsyncIterator[Bus]:
    b = await connect(nats_server.url, name="test-webhooks")
    await b.ensure_topology()
    yield b
    await b.close()


def _job(tenant: str, status: str, job_id: str = "11111111-1111-4111-8111-111111111111", **kw):
    job = {"job_id": job_id, "type": "photogrammetry", "tenant_id": tenant, "run": 1}
    return job_event(status, job, source="test.worker", attempt=1, **kw)


def _completed(tenant: str, job_id: str = "11111111-1111-4111-8111-111111111111") -> Event:
    return _job(
        tenant,
        "completed",
        job_id,
        result={"artifacts": [{"name": "model.glb", "key": f"jobs/{job_id}/model.glb"}]},
    )


def _failed(tenant: str, job_id: str = "22222222-2222-4222-8222-222222222222") -> Event:
    return _job(tenant, "failed", job_id, error={"code": "too_few_images", "message": "need 3"})


def _check_signed(rec, secret: str) -> dict:
    """Both the standardwebhooks package and our verify accept the delivery."""
    payload = standardwebhooks.Webhook(secret).verify(rec.body, rec.headers)
    assert verify(rec.headers, rec.body, secret).id == rec.headers["webhook-id"]
    return payload


async def test_job_events_reach_two_subscriptions_via_real_process(
    pool: asyncpg.Pool, bus: Bus, nats_server, fresh_db: str
) -> None:
    async with Receiver() as recv:
        a = await make_tenant(pool, "acme")
        b = await make_tenant(pool, "other")
        s1, k1 = await make_subscription(pool, a, f"{recv.url}/one", ["processing.*"])
        s2, k2 = await make_subscription(
            pool, a, f"{recv.url}/two", ["processing.completed", "processing.failed"]
        )
        await make_subscription(pool, a, f"{recv.url}/codes", ["ar_code.*"])
        await make_subscription(pool, b, f"{recv.url}/tenant-b", ["*"])  # isolation
        env = {
            **os.environ,
            "ARFORGE_NATS_URL": nats_server.url,
            "ARFORGE_DATABASE_URL": fresh_db,
            "ARFORGE_WEBHOOKS__ALLOW_PRIVATE_TARGETS": "true",
            "ARFORGE_WEBHOOKS__POLL_INTERVAL_S": "0.1",
        }
        proc = subprocess.Popen(  # noqa: ASYNC220 - a real dispatcher process
            [sys.executable, "-m", "arforge.webhooks"], env=env, cwd=REPO
        )
        try:
            await bus.emit(_job(a, "started"))  # internal only
            await bus.emit(_job(a, "progress", seq=1, fraction=0.5, stage="sfm"))  # not opted in
            done, failed = _completed(a), _failed(a)
            await bus.emit(done)
            await bus.emit(failed)
            await bus.emit(done)  # a re-emitted event is not delivered twice
            got = await recv.wait_for(4, timeout=20)
            await asyncio.sleep(1.0)  # nothing else should arrive
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.to_thread(proc.wait, 20)
        assert rc == 0
        assert sorted(r.path for r in recv.received) == ["/one", "/one", "/two", "/two"]
        for r in got:
            payload = _check_signed(r, k1 if r.path == "/one" else k2)
            assert payload["type"] in ("processing.completed", "processing.failed")
            if payload["type"] == "processing.completed":
                assert payload["data"]["job_id"] == done.subject
                assert payload["data"]["artifacts"][0]["name"] == "model.glb"
            else:
                assert payload["data"]["error"]["code"] == "too_few_images"
        ids = {r.headers["webhook-id"] for r in got}
        assert len(ids) == 4
        rows = await pool.fetch("SELECT status, attempts FROM webhook_messages")
        assert len(rows) == 4 and all(r["status"] == "succeeded" for r in rows)
        assert all(r["attempts"] == 1 for r in rows)
        n = await pool.fetchval("SELECT count(*) FROM webhook_attempts WHERE succeeded")
        assert n == 4
        subs = await pool.fetch("SELECT DISTINCT subscription_id FROM webhook_messages")
        assert {str(r["subscription_id"]) for r in subs} == {s1, s2}


async def test_recording_is_idempotent_per_event_and_subscription(pool: asyncpg.Pool) -> None:
    a = await make_tenant(pool, "acme")
    await make_subscription(pool, a, "http://127.0.0.1:9/x", ["processing.*"])
    await make_subscription(pool, a, "http://127.0.0.1:9/y", ["*"])
    from arforge.webhooks.dispatcher import Dispatcher

    d = Dispatcher(pool, fast_settings())
    ev = _completed(a)
    assert await d.handle_event(ev) == 2
    assert await d.handle_event(ev) == 0
    old = ev.model_copy(update={"id": "old-one", "time": datetime.now(UTC) - timedelta(hours=2)})
    assert await d.handle_event(old) == 0  # older than the subscriptions: not sent
    assert await pool.fetchval("SELECT count(*) FROM webhook_messages") == 2
    await d.client.close()


async def test_fail_twice_then_succeed_follows_schedule(pool: asyncpg.Pool, bus: Bus) -> None:
    calls = 0

    async def flaky(request, rec):
        nonlocal calls
        calls += 1
        return web.Response(status=500 if calls <= 2 else 200, text=f"call {calls}")

    async with Receiver(handlers={"/hook": flaky}) as recv:
        a = await make_tenant(pool, "acme")
        _, secret = await make_subscription(pool, a, f"{recv.url}/hook", ["processing.*"])
        settings = fast_settings(backoff_initial_s=0.4, backoff_multiplier=2.0)
        async with running_dispatcher(pool, settings, bus=bus):
            await bus.emit(_completed(a))
            got = await recv.wait_for(3, timeout=15)
            await asyncio.sleep(0.3)
    gap1, gap2 = got[1].at - got[0].at, got[2].at - got[1].at
    # never early; late only by scheduling noise (a loaded CI machine)
    assert 0.4 <= gap1 < 0.4 + 0.6, gap1
    assert 0.8 <= gap2 < 0.8 + 0.6, gap2
    assert len({r.headers["webhook-id"] for r in got}) == 1  # stable across retries
    for r in got:
        _check_signed(r, secret)
    attempts = await pool.fetch(
        "SELECT attempt, status_code, error_class, succeeded, next_retry_at, response_excerpt,"
        " latency_ms FROM webhook_attempts ORDER BY attempt"
    )
    assert [x["status_code"] for x in attempts] == [500, 500, 200]
    assert [x["succeeded"] for x in attempts] == [False, False, True]
    assert attempts[0]["next_retry_at"] is not None and attempts[2]["next_retry_at"] is None
    assert attempts[0]["error_class"] == "http_status" and attempts[2]["error_class"] is None
    assert attempts[2]["response_excerpt"] == "call 3"
    msg = await pool.fetchrow("SELECT status, attempts FROM webhook_messages")
    assert (msg["status"], msg["attempts"]) == ("succeeded", 3)


async def test_all_attempts_fail_then_message_failed(pool: asyncpg.Pool, bus: Bus) -> None:
    async def down(request, rec):
        return web.Response(status=502)

    async with Receiver(handlers={"/hook": down}) as recv:
        a = await make_tenant(pool, "acme")
        await make_subscription(pool, a, f"{recv.url}/hook", ["processing.failed"])
        async with running_dispatcher(pool, fast_settings(backoff_initial_s=0.1), bus=bus):
            await bus.emit(_failed(a))
            await recv.wait_for(3, timeout=10)
            for _ in range(50):
                status = await pool.fetchval("SELECT status FROM webhook_messages")
                if status == "failed":
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        assert len(recv.received) == 3  # default: 3 attempts in all
    row = await pool.fetchrow("SELECT status, attempts, last_error FROM webhook_messages")
    assert dict(row) == {"status": "failed", "attempts": 3, "last_error": "http_502"}


async def test_retry_after_is_honoured(pool: asyncpg.Pool, bus: Bus) -> None:
    calls = 0

    async def busy(request, rec):
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=429, headers={"Retry-After": "2"})
        return web.Response(text="ok")

    async with Receiver(handlers={"/hook": busy}) as recv:
        a = await make_tenant(pool, "acme")
        await make_subscription(pool, a, f"{recv.url}/hook", ["processing.*"])
        async with running_dispatcher(pool, fast_settings(backoff_initial_s=0.1), bus=bus):
            await bus.emit(_completed(a))
            got = await recv.wait_for(2, timeout=10)
    gap = got[1].at - got[0].at
    assert 2.0 <= gap < 2.9, gap


async def _disabled_events(bus: Bus) -> list[Event]:
    sub = await bus.js.subscribe("events.webhook.subscription_disabled", ordered_consumer=True)
    out = []
    try:
        while True:
            msg = await sub.next_msg(timeout=1.0)
            out.append(Event.model_validate_json(msg.data))
    except Exception:
        pass
    await sub.unsubscribe()
    return out


async def test_gone_disables_subscription_and_emits_event(pool: asyncpg.Pool, bus: Bus) -> None:
    async def gone(request, rec):
        return web.Response(status=410, text="unsubscribed")

    async with Receiver(handlers={"/hook": gone}) as recv:
        a = await make_tenant(pool, "acme")
        sid, _ = await make_subscription(pool, a, f"{recv.url}/hook", ["processing.*"])
        async with running_dispatcher(pool, fast_settings(), bus=bus):
            await bus.emit(_completed(a))
            await recv.wait_for(1, timeout=10)
            for _ in range(50):
                if not await pool.fetchval(
                    "SELECT enabled FROM webhook_subscriptions WHERE id = $1::uuid", sid
                ):
                    break
                await asyncio.sleep(0.1)
            await bus.emit(_failed(a))  # goes nowhere now
            await asyncio.sleep(1.0)
        assert len(recv.received) == 1  # no retry after 410
    sub = await pool.fetchrow(
        "SELECT enabled, disabled_reason FROM webhook_subscriptions WHERE id = $1::uuid", sid
    )
    assert dict(sub) == {"enabled": False, "disabled_reason": "gone"}
    msg = await pool.fetchrow("SELECT status, attempts FROM webhook_messages")
    assert (msg["status"], msg["attempts"]) == ("failed", 1)
    assert await pool.fetchval("SELECT count(*) FROM webhook_messages") == 1
    events = await _disabled_events(bus)
    assert [(e.subject, e.data["reason"], e.data["tenant_id"]) for e in events] == [
        (sid, "gone", a)
    ]


async def test_auto_disable_after_run_of_failures(pool: asyncpg.Pool, bus: Bus) -> None:
    async def down(request, rec):
        return web.Response(status=500)

    async with Receiver(handlers={"/hook": down}) as recv:
        a = await make_tenant(pool, "acme")
        sid, _ = await make_subscription(pool, a, f"{recv.url}/hook", ["processing.*"])
        settings = fast_settings(max_attempts=1, disable_after_failures=3, disable_after_s=2.0)
        enabled_after_three = None
        async with running_dispatcher(pool, settings, bus=bus):
            for i in range(3):  # three quick failures: enough in number, not yet in time
                await bus.emit(_failed(a, job_id=f"00000000-0000-4000-8000-00000000000{i}"))
            await recv.wait_for(3, timeout=10)
            t_first = recv.received[0].at
            await asyncio.sleep(0.3)
            enabled_after_three = await pool.fetchval("SELECT enabled FROM webhook_subscriptions")
            await asyncio.sleep(max(0.0, t_first + 2.1 - time.monotonic()))
            await bus.emit(_failed(a, job_id="00000000-0000-4000-8000-000000000009"))
            await recv.wait_for(4, timeout=10)
            await asyncio.sleep(0.5)
    assert enabled_after_three is True
    sub = await pool.fetchrow(
        "SELECT enabled, disabled_reason, consecutive_failures FROM webhook_subscriptions"
    )
    assert sub["enabled"] is False and sub["disabled_reason"] == "consecutive_failures"
    assert sub["consecutive_failures"] == 4
    events = await _disabled_events(bus)
    assert [(e.subject, e.data["reason"]) for e in events] == [(sid, "consecutive_failures")]


async def _raw(handler) -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_slow_and_dead_endpoints_do_not_delay_others(pool: asyncpg.Pool, bus: Bus) -> None:
    async def drip(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            for ch in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                writer.write(bytes([ch]))
                await writer.drain()
                await asyncio.sleep(0.5)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        writer.close()

    async def silent(reader, writer):
        await reader.read()  # never answers; returns when the client hangs up
        writer.close()

    drip_srv, drip_url = await _raw(drip)
    dead_srv, dead_url = await _raw(silent)
    async with drip_srv, dead_srv, Receiver() as recv:
        a = await make_tenant(pool, "acme")
        await make_subscription(pool, a, drip_url, ["processing.*"])
        await make_subscription(pool, a, dead_url, ["processing.*"])
        good, _ = await make_subscription(pool, a, f"{recv.url}/good", ["processing.*"])
        settings = fast_settings(
            attempt_timeout_s=2.0, max_attempts=1, concurrency=8, per_endpoint_concurrency=2
        )
        async with running_dispatcher(pool, settings, bus=bus):
            t0 = time.monotonic()
            for i in range(4):
                await bus.emit(_completed(a, job_id=f"00000000-0000-4000-8000-00000000001{i}"))
            await recv.wait_for(4, timeout=10)
            good_done = time.monotonic() - t0
            # the slow ones are still mid-attempt; nothing of theirs is recorded yet
            pending_slow = await pool.fetchval(
                "SELECT count(*) FROM webhook_messages WHERE status = 'pending'"
                " AND subscription_id <> $1::uuid",
                good,
            )
            for _ in range(120):
                if not await pool.fetchval(
                    "SELECT count(*) FROM webhook_messages WHERE status = 'pending'"
                ):
                    break
                await asyncio.sleep(0.25)
    assert good_done < 2.0, good_done  # inside one slow attempt's timeout
    assert pending_slow == 8
    rows = await pool.fetch(
        "SELECT a.error_class, a.latency_ms FROM webhook_attempts a WHERE NOT a.succeeded"
    )
    assert len(rows) == 8
    assert all(r["error_class"] == "timeout" for r in rows)
    assert all(1900 <= r["latency_ms"] < 3000 for r in rows), [r["latency_ms"] for r in rows]


async def test_rotation_sends_two_signatures_during_overlap(pool: asyncpg.Pool, bus: Bus) -> None:
    async with Receiver() as recv:
        a = await make_tenant(pool, "acme")
        sid, old = await make_subscription(pool, a, f"{recv.url}/hook", ["processing.*"])
        from arforge.webhooks.signing import generate_secret

        new = generate_secret()
        await pool.execute(
            "UPDATE webhook_subscriptions SET previous_secret = secret, secret = $2, "
            "previous_secret_expires_at = now() + interval '1 hour' WHERE id = $1::uuid",
            sid,
            new,
        )
        async with running_dispatcher(pool, fast_settings(), bus=bus):
            await bus.emit(_completed(a))
            await recv.wait_for(1, timeout=10)
            await pool.execute(
                "UPDATE webhook_subscriptions SET previous_secret_expires_at = now() "
                "WHERE id = $1::uuid",
                sid,
            )
            await bus.emit(_failed(a))
            await recv.wait_for(2, timeout=10)
    during, after = recv.received
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    _check_signed(during, new)
    _check_signed(during, old)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    _check_signed(after, new)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old).verify(after.body, after.headers)


async def test_two_dispatchers_share_work_without_double_sends(
    pool: asyncpg.Pool, bus: Bus, nats_server
) -> None:
    async def slowish(request, rec):
        await asyncio.sleep(0.05)
        return web.Response(text="ok")

    n = 60
    async with Receiver(handlers={"/hook": slowish}) as recv:
        a = await make_tenant(pool, "acme")
        await make_subscription(pool, a, f"{recv.url}/hook", ["processing.*"])
        await make_subscription(pool, a, f"{recv.url}/hook2", ["processing.completed"])
        bus2 = await connect(nats_server.url, name="second")
        settings = fast_settings(per_endpoint_concurrency=4, concurrency=6)
        try:
            async with (
                running_dispatcher(pool, settings, bus=bus) as d1,
                running_dispatcher(pool, settings, bus=bus2) as d2,
            ):
                for i in range(n):
                    await bus.emit(_completed(a, job_id=f"00000000-0000-4000-8000-{i:012d}"))
                await recv.wait_for(2 * n, timeout=30)
                await asyncio.sleep(1.0)
        finally:
            await bus2.close()
    ids = [r.headers["webhook-id"] for r in recv.received]
    assert len(ids) == 2 * n and len(set(ids)) == 2 * n
    assert d1.sent + d2.sent == 2 * n
    assert d1.sent > 0 and d2.sent > 0


async def test_guard_blocks_loopback_when_private_targets_off(pool: asyncpg.Pool, bus: Bus) -> None:
    async with Receiver() as recv:
        a = await make_tenant(pool, "acme")
        await make_subscription(pool, a, f"{recv.url}/hook", ["processing.*"])
        settings = fast_settings(allow_private_targets=False, max_attempts=1)
        async with running_dispatcher(pool, settings, bus=bus):
            await bus.emit(_completed(a))
            for _ in range(50):
                if await pool.fetchval("SELECT count(*) FROM webhook_attempts"):
                    break
                await asyncio.sleep(0.1)
        assert recv.received == []
    row = await pool.fetchrow("SELECT error_class, status_code FROM webhook_attempts")
    assert dict(row) == {"error_class": "blocked_target", "status_code": None}
    body = await pool.fetchval("SELECT body FROM webhook_messages")
    assert json.loads(body)["type"] == "processing.completed"
