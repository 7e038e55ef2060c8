"""The tracker process loop against a real nats-server and PostgreSQL.

Events go through JetStream exactly as workers publish them; duplicates are republished
under fresh ``Nats-Msg-Id``s so the server's de-duplication cannot hide them from the
tracker, and events are sent out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arforge.api.testing import (
    all_implemented,
    api_settings,
    insert_upload,
    new_tenant_key,
    running_api,
)
from arforge.api.tracker.consumer import run_tracker
from arforge.shared.bus import connect
from arforge.shared.contracts import Event, JobMessage, Registry, job_event


@pytest.fixture
async def stack(nats_server, fresh_db: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    # mesh / ai-vision have no worker yet: the API accepts them here, the tests play the worker
    async with (
        running_api(settings, registry=all_implemented()) as (app, client),
        tracker(settings),
    ):
        yield app, client


@contextlib.asynccontextmanager
async def tracker(settings) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_tracker(settings, stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def publish_raw(bus, event: Event, msg_id: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Publish like ``bus.emit`` but with our own message id (to defeat server dedup)."""
    await bus.js.publish(
        event.subject_name(),
        event.model_dump_json().encode(),
        headers={"Nats-Msg-Id": msg_id or str(uuid.uuid4())},
    )


async def wait_for(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_duplicates_and_out_of_order_events(stack) -> None:  # type: ignore[no-untyped-def]
    app, client = stack
    bus = app.state.bus
    h = await new_tenant_key(app)
    job = (
        await client.post(
            "/v1/jobs",
            json={"type": "mesh", "inputs": [await insert_upload(app, h, kind="glb")]},
            headers=h,
        )
    ).json()
    ref = {"job_id": job["id"], "type": "mesh", "tenant_id": "t", "run": 1}
    started1 = job_event("started", ref, source="w", attempt=1)
    retrying1 = job_event(
        "retrying", ref, source="w", attempt=1, error={"code": "timeout", "message": "slow"}
    )
    started2 = job_event("started", ref, source="w", attempt=2)
    progress2 = job_event("progress", ref, source="w", attempt=2, seq=1, fraction=0.6, stage="lod")
    art = {
        "name": "model_low.glb",
        "key": f"jobs/{job['id']}/model_low.glb",
        "content_type": "model/gltf-binary",
        "size": 10,
    }
    completed = job_event(
        "completed",
        ref,
        source="w",
        attempt=2,
        result={"artifacts": [art], "lod_faces": {"low": 120}},
    )
    # completed arrives first; then stale events and duplicates of everything
    for ev in (completed, started2, retrying1, progress2, started1, completed, retrying1, started2):
        await publish_raw(bus, ev)

    async def settled():  # type: ignore[no-untyped-def]
        n = await app.state.pool.fetchval(
            "SELECT count(*) FROM job_events WHERE job_id = $1", uuid.UUID(job["id"])
        )
        return n == 6 and n  # queued (from the API) + 5 distinct events

    await wait_for(settled)
    await asyncio.sleep(0.5)  # duplicates still in flight would land now
    got = (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()
    assert got["status"] == "completed"
    assert got["attempt"] == 2
    assert got["progress"] == {"fraction": 1.0, "stage": None}
    assert got["result"]["lod_faces"] == {"low": 120}
    assert got["result"]["artifacts"][0]["name"] == "model_low.glb"
    assert got["error"] is None
    assert got["finished_at"] is not None
    n = await app.state.pool.fetchval(
        "SELECT count(*) FROM job_events WHERE job_id = $1", uuid.UUID(job["id"])
    )
    assert n == 6


async def test_sse_follows_live_events_to_the_end(stack) -> None:  # type: ignore[no-untyped-def]
    app, client = stack
    bus = app.state.bus
    h = await new_tenant_key(app)
    job = (
        await client.post(
            "/v1/jobs",
            json={"type": "mesh", "inputs": [await insert_upload(app, h, kind="glb")]},
            headers=h,
        )
    ).json()
    ref = {"job_id": job["id"], "type": "mesh", "tenant_id": "t", "run": 1}

    async def worker() -> None:
        await asyncio.sleep(0.8)
        await bus.emit(job_event("started", ref, source="w", attempt=1))
        await asyncio.sleep(0.8)
        await bus.emit(
            job_event(
                "failed",
                ref,
                source="w",
                attempt=1,
                error={"code": "bad_input", "message": "empty mesh"},
            )
        )

    task = asyncio.create_task(worker())
    t0 = time.monotonic()
    resp = await asyncio.wait_for(client.get(f"/v1/jobs/{job['id']}/events", headers=h), timeout=30)
    await task
    types = [ln[7:] for ln in resp.text.splitlines() if ln.startswith("event: ")]
    assert types == ["job.queued", "job.started", "job.failed"]
    assert time.monotonic() - t0 >= 1.5  # it waited for the live events


async def test_crash_loop_advisory_dead_letters_the_job(stack) -> None:  # type: ignore[no-untyped-def]
    app, client = stack
    bus = app.state.bus
    # one attempt (+2 crash allowance = 3 deliveries) and a 1 s ack_wait for this test
    reg = Registry().with_overrides({"ai-vision": {"delays_s": []}})
    await bus.ensure_topology([reg["ai-vision"]], ack_wait_s=1.0)
    h = await new_tenant_key(app)
    up = await insert_upload(app, h, kind="image")
    job = (
        await client.post(
            "/v1/jobs",
            json={"type": "ai-vision", "inputs": [up], "params": {"prompt": "what is this?"}},
            headers=h,
        )
    ).json()

    # a "worker" that takes the message and dies every time (never acks)
    sub = await bus.js.pull_subscribe_bind("ai-vision-default", stream="JOBS")
    deliveries = 0
    deadline = time.monotonic() + 20
    while deliveries < 3 and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            msgs = await sub.fetch(1, timeout=2)
            deliveries += len(msgs)
            assert JobMessage.model_validate_json(msgs[0].data).job_id == job["id"]
    assert deliveries == 3
    # the next pull after the last ack_wait makes the server give up and publish the advisory
    with contextlib.suppress(Exception):
        await sub.fetch(1, timeout=2.5)
    await sub.unsubscribe()

    async def dead() -> dict | None:
        got = (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()
        return got if got["dead_lettered"] and got["status"] == "failed" else None

    got = await wait_for(dead, timeout=30)
    assert got["error"]["code"] == "crash_loop"
    assert (await bus.js.stream_info("JOBS")).state.messages == 0
    assert (await bus.js.stream_info("DLQ")).state.messages == 1

    dl = (await client.get(f"/v1/dead-letters/{job['id']}", headers=h)).json()
    assert (dl["reason"], dl["run"], dl["attempts"], dl["job_status"]) == (
        "crash_loop",
        1,
        3,
        "failed",
    )
    listed = (await client.get("/v1/dead-letters", headers=h)).json()
    assert [d["job_id"] for d in listed["items"]] == [job["id"]]
    other = await new_tenant_key(app)
    assert (await client.get(f"/v1/dead-letters/{job['id']}", headers=other)).status_code == 404
    assert (await client.get("/v1/dead-letters", headers=other)).json()["items"] == []

    resp = await client.post(f"/v1/dead-letters/{job['id']}/replay", headers=h)
    assert resp.status_code == 202, resp.text
    assert (resp.json()["run"], resp.json()["status"]) == (2, "queued")
    assert (await bus.js.stream_info("DLQ")).state.messages == 0
    raw = await bus.js.get_last_msg("JOBS", "jobs.ai-vision.default")
    assert JobMessage.model_validate_json(raw.data).run == 2
    again = await client.post(f"/v1/dead-letters/{job['id']}/replay", headers=h)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_replayed"
    assert (await client.get("/v1/dead-letters", headers=h)).json()["items"] == []
    replayed = (await client.get("/v1/dead-letters?replayed=true", headers=h)).json()
    assert replayed["items"][0]["replayed_at"] is not None


async def test_two_trackers_share_the_durable(nats_server, fresh_db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    async with (
        running_api(settings, registry=all_implemented()) as (app, client),
        tracker(settings),
        tracker(settings),
    ):
        h = await new_tenant_key(app)
        up = await insert_upload(app, h, kind="glb")
        jobs = [
            (
                await client.post("/v1/jobs", json={"type": "mesh", "inputs": [up]}, headers=h)
            ).json()["id"]
            for _ in range(5)
        ]
        bus = await connect(nats_server.url, name="fake-worker")
        try:
            for jid in jobs:
                ref = {"job_id": jid, "type": "mesh", "tenant_id": "t", "run": 1}
                await bus.emit(job_event("started", ref, source="w", attempt=1))
                await bus.emit(
                    job_event("completed", ref, source="w", attempt=1, result={"artifacts": []})
                )
        finally:
            await bus.close()

        async def all_done():  # type: ignore[no-untyped-def]
            return await app.state.pool.fetchval(
                "SELECT count(*) = 5 FROM jobs WHERE status = 'completed'"
            )

        await wait_for(all_done)
        assert await app.state.pool.fetchval("SELECT count(*) FROM job_events") == 15
