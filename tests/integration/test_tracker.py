"""The tracker process loop against a real nats-server and PostgreSQL.

Events go through JetStream exactly as workers publish them; duplicates are republished
under fresh ``Nats-Msg-Id``s so the server's de-duplication cannot hide them from the
tracker, and events are sent out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from arforge.api.db import create_pool, migrate
from arforge.api.testing import (
    all_implemented,
    api_settings,
    insert_upload,
    new_tenant_key,
    running_api,
)
from arforge.api.tracker.consumer import handle_event_batch, handle_event_message, run_tracker
from arforge.api.tracker.state import Decision
from arforge.api.tracker.store import job_uuid, record_event, record_events
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


# --- the batch write path: the same rows as record_event one event at a time ------------
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
JOB_COLUMNS = (
    "status, run, attempt, progress, progress_stage, result, error_code, error_message,"
    " dead_lettered, started_at, finished_at"
)
OLD = datetime(2000, 1, 1, tzinfo=UTC)  # updated_at before the test: did anything update?


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[Any]:
    await migrate(fresh_db)
    pool = await create_pool(fresh_db, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def new_tenant(pool) -> uuid.UUID:  # type: ignore[no-untyped-def]
    return await pool.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO tenants (name) VALUES ($1) RETURNING id", f"t-{uuid.uuid4().hex}"
    )


async def insert_job(pool, tenant: uuid.UUID, job_id: uuid.UUID, row: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    cols = ", ".join(row)
    args = ", ".join(f"${i + 4}" for i in range(len(row)))
    await pool.execute(
        f"INSERT INTO jobs (id, tenant_id, type, priority, updated_at, {cols})"
        f" VALUES ($1, $2, 'mesh', 'default', $3, {args})",
        job_id,
        tenant,
        OLD,
        *row.values(),
    )


def random_row(rng: random.Random) -> dict[str, Any]:
    """A jobs row the tracker may find: mostly fresh, sometimes mid-flight or finished."""
    status = rng.choice(
        ["queued"] * 4 + ["started", "retrying", "completed", "failed", "cancelled"]
    )
    t = T0 + timedelta(seconds=rng.uniform(0, 60))
    return {
        "status": status,
        "run": rng.choice([1, 1, 1, 2]),
        "attempt": 0 if status == "queued" else rng.randint(1, 2),
        "progress": rng.choice([0.0, 0.0, rng.random()]),
        "progress_stage": rng.choice([None, "sfm"]),
        "result": {"old": [1, {"x": None}]} if status == "completed" else None,
        "error_code": "timeout" if status in ("retrying", "failed") else None,
        "error_message": "slow" if status in ("retrying", "failed") else None,
        "dead_lettered": rng.random() < 0.1,
        "started_at": None if status == "queued" else t,
        "finished_at": t if status in ("completed", "failed", "cancelled") else None,
    }


def abstract_events(rng: random.Random, n_jobs: int) -> list[dict[str, Any]]:
    """A scrambled lifecycle stream over logical jobs ``0..n_jobs-1`` (ids filled in later):
    runs 1-2, attempts 1-3, progress, retrying, terminal races, dead letters, duplicates
    (also with different contents), events without a usable job id, out of order."""
    fractions = [0.25, 0.6, 0.6000000001, 0.60000002, 1e-50, 1.5, -0.2, "0.3", "nan", "x"]
    results = [None, {}, {"artifacts": []}, {"a": {"b": [1, 2.5, None, "\u00e9\u2713"]}, "n": 3}]
    errors = [{"code": "timeout", "message": "slow"}, "plain", None, {"message": "m"}]
    out: list[dict[str, Any]] = []

    def add(job: int, status: str, run: int, attempt: int, key: str, **data: Any) -> None:
        out.append(
            {
                "key": key,
                "job": job,
                "status": status,
                "run": run,
                "attempt": attempt,
                "at": rng.choice([rng.uniform(0, 120), float(rng.randint(0, 5))]),
                "zone": rng.randrange(len(ZONES)),
                "mode": rng.choice(["subject"] * 8 + ["data_only", "no_job"]),
                "data": data,
            }
        )

    for j in range(n_jobs):
        for run in range(1, rng.choice([1, 1, 2]) + 1):
            add(j, "queued", run, 0, f"{j}:{run}:q")
            attempts = rng.randint(1, 3)
            for a in range(1, attempts + 1):
                add(j, "started", run, a, f"{j}:{run}:{a}:s")
                for k in range(rng.randint(0, 3)):
                    add(
                        j,
                        "progress",
                        run,
                        a,
                        f"{j}:{run}:{a}:p{k}",
                        seq=k,
                        fraction=rng.choice(fractions),
                        stage=rng.choice(["sfm", "mvs", None]),
                    )
                if a < attempts or rng.random() < 0.3:
                    add(j, "retrying", run, a, f"{j}:{run}:{a}:r", error=rng.choice(errors))
            for terminal in rng.sample(["completed", "failed", "cancelled"], rng.randint(1, 2)):
                extra: dict[str, Any] = {}
                if terminal == "completed":
                    extra["result"] = rng.choice(results)
                elif terminal == "failed":
                    extra["error"] = rng.choice(errors)
                add(j, terminal, run, attempts, f"{j}:{run}:{terminal}", **extra)
            if rng.random() < 0.4:
                add(
                    j,
                    "dead_lettered",
                    run,
                    attempts,
                    f"{j}:{run}:dl",
                    reason=rng.choice(["attempts_exhausted", "crash_loop", None]),
                    attempts=rng.choice([None, attempts, 7]),
                    last_error=rng.choice([None, "boom"]),
                )
    for ev in rng.sample(out, len(out) // 4):  # duplicates; some with other contents
        dup = {**ev, "data": dict(ev["data"])}
        if rng.random() < 0.4:
            dup["data"]["fraction"] = rng.random()
            dup["at"] = rng.uniform(0, 120)
        out.append(dup)
    if rng.random() < 0.5:
        rng.shuffle(out)
    else:  # mostly in order, some neighbours swapped
        for _ in range(len(out) // 3):
            i = rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def build(ev: dict[str, Any], job_ids: list[uuid.UUID], prefix: str) -> Event:
    jid = str(job_ids[ev["job"]])
    subject = {"subject": jid, "data_only": "not-a-uuid", "no_job": "nope"}[ev["mode"]]
    data = {"type": "mesh", "tenant_id": "t", "run": ev["run"], "attempt": ev["attempt"]}
    if ev["mode"] != "no_job":
        data["job_id"] = jid
    return Event(
        id=f"{prefix}{ev['key']}",
        type=f"job.{ev['status']}",
        time=(T0 + timedelta(seconds=ev["at"])).astimezone(ZONES[ev["zone"]]),
        source="w",
        subject=subject,
        data={**data, **ev["data"]},
    )


async def snapshot(pool, prefix: str, job_ids: list[uuid.UUID]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """jobs / job_events / dead_letters rows of one copy, with its ids made logical."""
    logical = {jid: i for i, jid in enumerate(job_ids)}
    jobs = {
        logical[r["id"]]: dict(r)
        for r in await pool.fetch(
            f"SELECT id, {JOB_COLUMNS}, updated_at <> $2 AS updated FROM jobs"
            " WHERE id = ANY($1) ORDER BY id",
            job_ids,
            OLD,
        )
    }
    for row in jobs.values():
        del row["id"]
    events = []
    for r in await pool.fetch(
        "SELECT * FROM job_events WHERE id LIKE $1 || '%' ORDER BY seq", prefix
    ):
        data = dict(r["data"])
        if data.get("job_id") == str(r["job_id"]):
            data["job_id"] = logical[r["job_id"]]
        events.append(
            (
                r["id"].removeprefix(prefix),
                logical[r["job_id"]],
                r["type"],
                r["time"],
                r["source"],
                r["run"],
                r["attempt"],
                data,
            )
        )
    dead = [
        (
            logical[r["job_id"]],
            r["run"],
            r["reason"],
            r["attempts"],
            r["last_error"],
            r["replayed_at"],
        )
        for r in await pool.fetch(
            "SELECT * FROM dead_letters WHERE job_id = ANY($1) ORDER BY job_id, run", job_ids
        )
    ]
    dead.sort(key=lambda d: (d[0], d[1]))
    return {"jobs": jobs, "events": events, "dead_letters": dead}


def batch_decisions(batch: list[Any], decisions: dict[str, Decision]) -> list[Decision | None]:
    """What ``record_event`` would have returned for each event of ``batch`` in turn."""
    out: list[Decision | None] = []
    seen: set[str] = set()
    for e in batch:
        if job_uuid(e) is None or e.id in seen:
            out.append(None)
            continue
        seen.add(e.id)
        out.append(decisions.get(e.id))
    return out


async def test_batch_path_equals_record_event_one_by_one(pool) -> None:  # type: ignore[no-untyped-def]
    tenant = await new_tenant(pool)
    totals = {"events": 0, "updated": 0, "dead": 0, "batches": 0}
    for scenario in range(40):
        rng = random.Random(1000 + scenario)
        n_jobs = rng.randint(2, 6)
        abstract = abstract_events(rng, n_jobs)
        seq_ids = [uuid.uuid4() for _ in range(n_jobs)]
        bat_ids = [uuid.uuid4() for _ in range(n_jobs)]
        for j in range(n_jobs):
            if rng.random() < 0.15:
                continue  # an unknown job: its events are stored, nothing else changes
            row = random_row(rng)
            await insert_job(pool, tenant, seq_ids[j], row)
            await insert_job(pool, tenant, bat_ids[j], row)
        seq_events = [build(ev, seq_ids, f"s{scenario}-") for ev in abstract]
        bat_events = [build(ev, bat_ids, f"b{scenario}-") for ev in abstract]

        async with pool.acquire() as conn:
            want = [await record_event(conn, e) for e in seq_events]
            got: list[Decision | None] = []
            i = 0
            while i < len(bat_events):
                n = rng.choice([1, 2, rng.randint(1, 12), rng.randint(10, 60)])
                batch = bat_events[i : i + n]
                plan = await record_events(conn, batch)
                got += batch_decisions(batch, plan.decisions)
                i += n
                totals["batches"] += 1

        assert got == want, f"scenario {scenario}"
        a = await snapshot(pool, f"s{scenario}-", seq_ids)
        b = await snapshot(pool, f"b{scenario}-", bat_ids)
        assert b == a, f"scenario {scenario}"
        totals["events"] += len(a["events"])
        totals["updated"] += sum(r["updated"] for r in a["jobs"].values())
        totals["dead"] += len(a["dead_letters"])
    # the scenarios exercised what they claim to (not vacuous)
    assert totals["events"] > 1000 and totals["updated"] > 60 and totals["dead"] > 10, totals


async def test_batch_runs_a_constant_number_of_statements(pool) -> None:  # type: ignore[no-untyped-def]
    tenant = await new_tenant(pool)
    jobs = [uuid.uuid4() for _ in range(20)]
    for jid in jobs:
        await insert_job(pool, tenant, jid, {"status": "queued"})
    events = []
    for jid in jobs:
        ref = {"job_id": str(jid), "type": "mesh", "tenant_id": "t", "run": 1}
        events += [
            job_event("started", ref, source="w", attempt=1),
            job_event("progress", ref, source="w", attempt=1, seq=1, fraction=0.5, stage="x"),
            job_event("completed", ref, source="w", attempt=1, result={"k": [1, {"n": None}]}),
        ]
    dl_ref = {"job_id": str(jobs[0]), "type": "mesh", "tenant_id": "t", "run": 1}
    events.append(job_event("dead_lettered", dl_ref, source="w", attempt=1, reason="crash_loop"))
    warm_job = uuid.uuid4()  # asyncpg introspects new types once per connection
    await insert_job(pool, tenant, warm_job, {"status": "queued"})
    warm_ref = {"job_id": str(warm_job), "type": "mesh", "tenant_id": "t", "run": 1}
    queries: list[str] = []
    async with pool.acquire() as conn:
        await record_events(conn, [job_event("completed", warm_ref, source="w", attempt=1)])
        conn.add_query_logger(lambda q: queries.append(q.query))
        await record_events(conn, events)
        await asyncio.sleep(0.05)  # the logger callbacks run on the loop
        # BEGIN, the insert, the lock, the update, the one dead letter, COMMIT
        assert [q.split()[0] for q in queries] == [
            "BEGIN;",
            "INSERT",
            "SELECT",
            "UPDATE",
            "INSERT",
            "COMMIT;",
        ], queries
        queries.clear()
        await record_events(conn, events)  # all stored already: the insert alone
        await asyncio.sleep(0.05)
        assert [q.split()[0] for q in queries] == ["BEGIN;", "INSERT", "COMMIT;"], queries
    rows = await pool.fetch(
        "SELECT status, progress, result, updated_at <> $2 AS upd FROM jobs WHERE id = ANY($1)",
        jobs,
        OLD,
    )
    assert [(r["status"], r["progress"], r["result"], r["upd"]) for r in rows] == [
        ("completed", 1.0, {"k": [1, {"n": None}]}, True)
    ] * 20
    assert await pool.fetchval("SELECT count(*) FROM job_events") == 62
    dl = await pool.fetchrow("SELECT * FROM dead_letters")
    assert (dl["job_id"], dl["run"], dl["reason"]) == (jobs[0], 1, "crash_loop")


async def test_poison_batch_writes_nothing_and_falls_back_per_message(pool) -> None:  # type: ignore[no-untyped-def]
    tenant = await new_tenant(pool)
    good, bad = uuid.uuid4(), uuid.uuid4()
    for jid in (good, bad):
        await insert_job(pool, tenant, jid, {"status": "queued"})
    ref = {"job_id": str(good), "type": "mesh", "tenant_id": "t", "run": 1}
    bad_ref = {"job_id": str(bad), "type": "mesh", "tenant_id": "t", "run": 1}
    ok = [
        job_event("started", ref, source="w", attempt=1),
        job_event("completed", ref, source="w", attempt=1, result={"nested": {"a": [1, 2]}}),
    ]
    poison = job_event("started", bad_ref, source="w", attempt=2**40)  # beyond int4
    msgs = [
        type("Msg", (), {"data": e.model_dump_json().encode()})() for e in [ok[0], poison, ok[1]]
    ]
    msgs.append(type("Msg", (), {"data": b"{not json"})())
    with pytest.raises(asyncpg.DataError):
        await handle_event_batch(pool, msgs)
    assert await pool.fetchval("SELECT count(*) FROM job_events") == 0
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE updated_at <> $1", OLD) == 0
    # what Bus.consume does next: each message alone; only the poison one fails
    failed = 0
    for m in msgs:
        try:
            await handle_event_message(pool, m.data)
        except asyncpg.DataError:
            failed += 1
    assert failed == 1
    row = await pool.fetchrow("SELECT status, result, attempt FROM jobs WHERE id = $1", good)
    assert (row["status"], row["result"], row["attempt"]) == (
        "completed",
        {"nested": {"a": [1, 2]}},
        1,
    )
    assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", bad) == "queued"
    assert await pool.fetchval("SELECT count(*) FROM job_events") == 2


async def test_batch_rewrites_only_the_columns_events_change(pool) -> None:  # type: ignore[no-untyped-def]
    """A column no event touches keeps its stored value byte for byte (a jsonb read back
    through json.loads and written again would lose the digits below float precision)."""
    tenant = await new_tenant(pool)
    jid = uuid.uuid4()
    await insert_job(pool, tenant, jid, {"status": "queued"})
    await pool.execute(
        "UPDATE jobs SET result = $2::text::jsonb WHERE id = $1",
        jid,
        '{"precise": 1.000000000000000000001}',
    )
    ref = {"job_id": str(jid), "type": "mesh", "tenant_id": "t", "run": 1}
    async with pool.acquire() as conn:
        plan = await record_events(
            conn,
            [
                job_event("started", ref, source="w", attempt=1),
                job_event("progress", ref, source="w", attempt=1, seq=1, fraction=0.4, stage="a"),
            ],
        )
    assert plan.writes[jid].columns >= {"status", "attempt", "progress", "started_at"}
    assert "result" not in plan.writes[jid].columns
    row = await pool.fetchrow(
        "SELECT status, progress, progress_stage, result::text AS r FROM jobs WHERE id = $1", jid
    )
    assert (row["status"], row["progress"], row["progress_stage"]) == (
        "started",
        0.4000000059604645,
        "a",
    )
    assert row["r"] == '{"precise": 1.000000000000000000001}'
