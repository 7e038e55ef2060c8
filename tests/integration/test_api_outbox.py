"""Job submission as an outbox: a failed publish never loses or duplicates a job.

Real nats-server and PostgreSQL; the only interference is making ``bus.submit`` fail
(before or after the server stored the message) to reproduce a paused / slow NATS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from arforge.api.outbox import PublishedMarks, republish_once
from arforge.api.testing import api_settings, insert_upload, new_tenant_key, running_api
from arforge.shared.contracts import JobMessage


@pytest.fixture
async def api(nats_server, fresh_db: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    async with running_api(settings, republish_every_s=0.2, republish_after_s=0.5) as (
        app,
        client,
    ):
        yield app, client


@pytest.fixture
async def quiet_api(nats_server, fresh_db: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The API with its republisher effectively off: only what a test does publishes or
    stamps rows."""
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    async with running_api(settings, republish_every_s=3600, republish_after_s=3600) as (
        app,
        client,
    ):
        yield app, client


def fail_submits(bus, n: int, *, after_store: bool) -> list[str]:  # type: ignore[no-untyped-def]
    """Make the next ``n`` ``bus.submit`` calls raise; with ``after_store`` the message is
    stored on the server first (a publish whose ack was lost). Returns the failed job ids."""
    real = bus.submit
    failed: list[str] = []

    async def submit(job: JobMessage, **kw: object) -> int:
        if len(failed) < n:
            failed.append(job.job_id)
            if after_store:
                await real(job, **kw)
            raise TimeoutError("nats: timeout")
        return await real(job, **kw)

    bus.submit = submit
    return failed


async def published_at(app, job_id: str):  # type: ignore[no-untyped-def]
    return await app.state.pool.fetchval(
        "SELECT bus_published_at FROM jobs WHERE id = $1", uuid.UUID(job_id)
    )


async def wait_published(app, job_id: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while await published_at(app, job_id) is None:
        assert time.monotonic() < deadline, "the republisher did not publish the job"
        await asyncio.sleep(0.1)


async def take_all(bus, consumer: str) -> list[JobMessage]:  # type: ignore[no-untyped-def]
    """Every message a worker of ``consumer`` would get (acked), until the lane is empty."""
    sub = await bus.js.pull_subscribe_bind(consumer, stream="JOBS")
    out: list[JobMessage] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(10, timeout=1.0)
            except TimeoutError:
                break
            for m in msgs:
                out.append(JobMessage.model_validate_json(m.data))
                await m.ack()
    finally:
        await sub.unsubscribe()
    return out


@pytest.mark.parametrize("after_store", [False, True], ids=["lost", "stored-but-unacked"])
async def test_failed_publish_still_runs_the_job_exactly_once(api, after_store: bool) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    bus = app.state.bus
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    failed = fail_submits(bus, 1, after_store=after_store)

    resp = await client.post("/v1/jobs", json={"type": "photogrammetry", "inputs": [up]}, headers=h)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert failed == [job["id"]] and job["status"] == "queued"
    assert await published_at(app, job["id"]) is None
    stored = (await bus.js.stream_info("JOBS")).state.messages
    assert stored == (1 if after_store else 0)

    await wait_published(app, job["id"])
    got = await client.get(f"/v1/jobs/{job['id']}", headers=h)
    assert got.status_code == 200 and got.json()["status"] == "queued"
    # one message only: the republish of a stored message is dropped by Nats-Msg-Id dedup
    assert (await bus.js.stream_info("JOBS")).state.messages == 1
    runs = await take_all(bus, "photogrammetry-default")
    assert [(m.job_id, m.run) for m in runs] == [(job["id"], 1)]
    # the job.queued event went out too (exactly once, deduplicated by event id)
    ev = await bus.js.get_last_msg("EVENTS", "events.job.queued.photogrammetry")
    assert job["id"] in ev.data.decode()
    # nothing left for the republisher
    assert await republish_once(app.state.pool, bus, after_s=0) == 0


async def test_concurrent_republishers_take_each_row_once(quiet_api) -> None:  # type: ignore[no-untyped-def]
    # background pass effectively off: only the passes below run
    app, client = quiet_api
    bus = app.state.bus
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    fail_submits(bus, 12, after_store=False)
    ids = []
    for _ in range(12):
        r = await client.post(
            "/v1/jobs", json={"type": "photogrammetry", "inputs": [up]}, headers=h
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert (await bus.js.stream_info("JOBS")).state.messages == 0
    # a fresh row is not claimed (its first publish may still be in flight)
    assert await republish_once(app.state.pool, bus, after_s=60) == 0

    counts = await asyncio.gather(
        *(republish_once(app.state.pool, bus, after_s=0, batch=5) for _ in range(4))
    )
    counts += [await republish_once(app.state.pool, bus, after_s=0)]
    assert sum(counts) == 12
    assert (await bus.js.stream_info("JOBS")).state.messages == 12
    runs = await take_all(bus, "photogrammetry-default")
    assert sorted(m.job_id for m in runs) == sorted(ids)


async def test_retry_publish_failure_is_republished(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    bus = app.state.bus
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    job = (
        await client.post("/v1/jobs", json={"type": "photogrammetry", "inputs": [up]}, headers=h)
    ).json()
    await wait_published(app, job["id"])
    assert (await client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)).status_code == 202
    fail_submits(bus, 1, after_store=False)
    resp = await client.post(f"/v1/jobs/{job['id']}/retry", headers=h)
    assert resp.status_code == 202, resp.text
    assert resp.json()["run"] == 2
    await wait_published(app, job["id"])
    runs = await take_all(bus, "photogrammetry-default")
    assert [(m.job_id, m.run) for m in runs] == [(job["id"], 1), (job["id"], 2)]


async def test_confirmed_publishes_are_stamped_a_batch_per_statement(quiet_api) -> None:  # type: ignore[no-untyped-def]
    # republisher off (quiet_api): only the batched stamps write bus_published_at here
    app, client = quiet_api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    marks = app.state.marks
    marks.every_s = 30.0  # the background loop now waits 30 s between flushes
    await asyncio.sleep(0.2)  # let its current 50 ms wait end
    ids = []
    body = {"type": "photogrammetry", "inputs": [up]}
    for _ in range(20):
        r = await client.post("/v1/jobs", json=body, headers=h)
        assert r.status_code == 201, r.text
        ids.append(uuid.UUID(r.json()["id"]))
    assert len(marks) == 20  # confirmed, queued for stamping, not yet written
    assert await published_at(app, str(ids[0])) is None
    assert await marks.flush() == 20
    # now() is one value per statement: the 20 stamps were written by one UPDATE
    distinct = await app.state.pool.fetchval(
        "SELECT count(DISTINCT bus_published_at) FROM jobs WHERE id = ANY($1)", ids
    )
    assert distinct == 1


async def test_published_marks_match_the_run_and_flush_on_stop(quiet_api) -> None:  # type: ignore[no-untyped-def]
    app, client = quiet_api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    fail_submits(app.state.bus, 3, after_store=False)  # rows stay unstamped
    ids = []
    for _ in range(3):
        r = await client.post(
            "/v1/jobs", json={"type": "photogrammetry", "inputs": [up]}, headers=h
        )
        ids.append(r.json()["id"])
    marks = PublishedMarks(app.state.pool, every_s=3600)
    marks.add(ids[0], 1)
    marks.add(uuid.UUID(ids[1]), 1)
    marks.add(ids[2], 2)  # a run the row does not have: never stamped
    assert len(marks) == 3
    stop = asyncio.Event()
    stop.set()
    await marks.run(stop)  # stopping flushes what is queued
    assert len(marks) == 0
    assert await published_at(app, ids[0]) is not None
    assert await published_at(app, ids[1]) is not None
    assert await published_at(app, ids[2]) is None


async def test_batched_stamps_lock_rows_in_id_order_like_the_tracker(quiet_api) -> None:  # type: ignore[no-untyped-def]
    """A tracker transaction holding the lower id and then taking the higher one must not
    deadlock with a stamp batch that names the rows the other way round."""
    from arforge.api.db import jobs as q

    # republisher off (quiet_api): it would stamp the unpublished rows under the test's feet
    app, client = quiet_api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    fail_submits(app.state.bus, 2, after_store=False)  # rows stay unstamped
    body = {"type": "photogrammetry", "inputs": [up]}
    ids = [(await client.post("/v1/jobs", json=body, headers=h)).json()["id"] for _ in "ab"]
    low, high = sorted(uuid.UUID(i) for i in ids)
    pool = app.state.pool
    async with pool.acquire() as tracker_conn, pool.acquire() as stamp_conn:
        tx = tracker_conn.transaction()
        await tx.start()
        await tracker_conn.execute("SET LOCAL lock_timeout = '5s'")
        await tracker_conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR NO KEY UPDATE", low)
        stamping = asyncio.create_task(q.mark_published_many(stamp_conn, [(high, 1), (low, 1)]))
        await asyncio.sleep(0.3)  # the batch now waits for `low` (and holds nothing)
        assert not stamping.done()
        await tracker_conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR NO KEY UPDATE", high)
        await tx.commit()
        assert await asyncio.wait_for(stamping, 10) == 2
