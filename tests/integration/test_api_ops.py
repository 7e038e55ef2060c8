"""Health, readiness, metrics, OpenAPI, keys and migrations against real services."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from arforge.api.auth import create_api_key, tenant_for_key
from arforge.api.db import migrate
from arforge.api.testing import (
    all_implemented,
    api_settings,
    insert_upload,
    new_tenant_key,
    running_api,
)
from arforge.api.tracker.store import record_event
from arforge.shared.contracts import job_event
from arforge.shared.storage import LocalStore


@pytest.fixture
async def api(nats_server, fresh_db: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    # mesh has no worker yet; the metrics test uses it as a light type and plays the worker
    async with running_api(settings, registry=all_implemented()) as (app, client):
        yield app, client, nats_server


async def test_healthz_and_readyz(api) -> None:  # type: ignore[no-untyped-def]
    _, client, nats = api
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"nats": "ok", "postgres": "ok", "storage": "ok"}

    nats.stop()
    await asyncio.sleep(0.3)
    down = await client.get("/readyz")
    assert down.status_code == 503
    body = down.json()
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["message"] == "not ready: nats"
    assert body["checks"]["postgres"] == "ok" and body["checks"]["nats"].startswith("error")
    assert (await client.get("/healthz")).status_code == 200
    nats.start()


async def test_metrics_report_jobs_lanes_durations_and_dead_letters(api) -> None:  # type: ignore[no-untyped-def]
    app, client, _ = api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h, kind="glb")
    jobs = [
        (await client.post("/v1/jobs", json={"type": "mesh", "inputs": [up]}, headers=h)).json()
        for _ in range(3)
    ]
    ref = {"type": "mesh", "tenant_id": "t", "run": 1}
    async with app.state.pool.acquire() as conn:
        a, b = ({**ref, "job_id": j["id"]} for j in jobs[:2])
        for e in (
            job_event("started", a, source="w", attempt=1),
            job_event("completed", a, source="w", attempt=1, result={"artifacts": []}),
            job_event("started", b, source="w", attempt=1),
            job_event("retrying", b, source="w", attempt=1, error={"code": "x", "message": "y"}),
            job_event("failed", b, source="w", attempt=2, error={"code": "x", "message": "y"}),
            job_event(
                "dead_lettered",
                b,
                source="w",
                attempt=2,
                reason="attempts_exhausted",
                attempts=2,
                last_error="y",
            ),
        ):
            await record_event(conn, e)
        # a 42 s run for the histogram
        await conn.execute(
            "UPDATE jobs SET finished_at = started_at + interval '42 seconds' WHERE id = $1",
            uuid.UUID(jobs[0]["id"]),
        )
    text = (await client.get("/metrics")).text
    lines = set(text.splitlines())
    assert 'arforge_jobs{status="completed",type="mesh"} 1.0' in lines
    assert 'arforge_jobs{status="failed",type="mesh"} 1.0' in lines
    assert 'arforge_jobs{status="queued",type="mesh"} 1.0' in lines
    # all three messages still wait in the lane (no worker ran)
    assert 'arforge_lane_depth{priority="default",type="mesh"} 3.0' in lines
    assert 'arforge_lane_depth{priority="high",type="photogrammetry"} 0.0' in lines
    assert 'arforge_job_duration_seconds_bucket{le="30.0",type="mesh"} 0.0' in lines
    assert 'arforge_job_duration_seconds_bucket{le="60.0",type="mesh"} 1.0' in lines
    assert 'arforge_job_duration_seconds_sum{type="mesh"} 42.0' in lines
    assert 'arforge_job_retries_total{type="mesh"} 1.0' in lines
    assert 'arforge_dead_letters_total{reason="attempts_exhausted",type="mesh"} 1.0' in lines
    assert 'arforge_dead_letters_pending{type="mesh"} 1.0' in lines


async def test_openapi_documents_every_route(api) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = api
    spec = (await client.get("/openapi.json")).json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path.startswith(("/v1/jobs", "/v1/dead-letters", "/healthz", "/readyz")):
                assert op.get("summary"), f"{method} {path} has no summary"
    create = spec["paths"]["/v1/jobs"]["post"]
    assert "401" in create["responses"] and "422" in create["responses"]
    assert spec["components"]["schemas"]["Job"]["examples"]
    assert spec["components"]["schemas"]["JobCreate"]["examples"]
    assert "ApiKey" in spec["components"]["securitySchemes"]


async def test_keys_are_stored_hashed_and_scoped(fresh_db: str) -> None:
    await migrate(fresh_db)
    conn = await asyncpg.connect(fresh_db)
    try:
        key = await create_api_key(conn, "acme")
        key2 = await create_api_key(conn, "acme")
        assert key.startswith("afk_") and len(key) == 47 and key != key2
        rows = await conn.fetch("SELECT key_hash, prefix FROM api_keys")
        assert {r["key_hash"] for r in rows} == {
            hashlib.sha256(k.encode()).hexdigest() for k in (key, key2)
        }
        assert {r["prefix"] for r in rows} == {key[:12], key2[:12]}
        dump = str([dict(r) for r in await conn.fetch("SELECT * FROM api_keys")])
        assert key not in dump and key[12:] not in dump
        assert await conn.fetchval("SELECT count(*) FROM tenants") == 1
        t1, t2 = await tenant_for_key(conn, key), await tenant_for_key(conn, key2)
        assert t1 == t2 and t1 is not None and t1.name == "acme"
        await conn.execute("UPDATE api_keys SET revoked_at = now()")
        assert await tenant_for_key(conn, key) is None
        with pytest.raises(ValueError):
            await create_api_key(conn, "  ")
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_once(pg_url: str) -> None:
    name = f"arforge_mig_{uuid.uuid4().hex[:8]}"
    admin_url = pg_url.rsplit("/", 1)[0] + "/postgres"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        results = await asyncio.gather(*(migrate(dsn) for _ in range(4)))
        applied = sorted(v for r in results for v in r)
        conn = await asyncpg.connect(dsn)
        try:
            versions = [
                r["version"]
                for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
            ]
        finally:
            await conn.close()
        assert applied == versions  # each version applied by exactly one migrator
        assert versions[:3] == [1, 2, 3]
        assert await migrate(dsn) == []
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_entry_points_serve_and_track(nats_server, fresh_db: str, tmp_path: Path) -> None:
    """``python -m arforge.api`` (uvicorn) and ``python -m arforge.api.tracker`` as processes."""
    import os
    import sys

    import httpx

    from tests.conftest import free_port

    port = free_port()
    env = {
        **os.environ,
        "ARFORGE_NATS_URL": nats_server.url,
        "ARFORGE_DATABASE_URL": fresh_db,
        "ARFORGE_API_HOST": "127.0.0.1",
        "ARFORGE_API_PORT": str(port),
        "ARFORGE_STORAGE__ROOT": str(tmp_path / "store"),
    }
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", mod, env=env)
        for mod in ("arforge.api", "arforge.api.tracker")
    ]
    conn = await asyncpg.connect(fresh_db)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(150):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the API did not become ready")
            key = await create_api_key(conn, "proc")
            tenant = await tenant_for_key(conn, key)
            assert tenant is not None
            uid = uuid.uuid4()
            await conn.execute(
                "INSERT INTO uploads (id, tenant_id, key, kind, content_type, size)"
                " VALUES ($1, $2, $3, 'video', 'video/mp4', 10)",
                uid,
                uuid.UUID(tenant.id),
                f"uploads/{uid}/a.mp4",
            )
            await LocalStore(tmp_path / "store").put_bytes(
                f"uploads/{uid}/a.mp4", b"\0" * 10, content_type="video/mp4"
            )
            resp = await client.post(
                "/v1/jobs",
                json={"type": "photogrammetry", "inputs": [str(uid)]},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert resp.status_code == 201, resp.text
            # the tracker process stores the job.queued event the API emitted
            for _ in range(150):
                n = await conn.fetchval(
                    "SELECT count(*) FROM job_events WHERE job_id = $1 AND type = 'job.queued'",
                    uuid.UUID(resp.json()["id"]),
                )
                if n:
                    break
                await asyncio.sleep(0.2)
            assert n == 1
    finally:
        await conn.close()
        for p in procs:
            if p.returncode is None:
                p.terminate()
        codes = [await asyncio.wait_for(p.wait(), 30) for p in procs]
    # uvicorn re-raises SIGTERM after its graceful shutdown (-15); the tracker exits 0
    assert codes[0] in (0, -15) and codes[1] == 0


async def test_metrics_token_guards_metrics_when_set(
    nats_server, fresh_db: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    settings.metrics_token = SecretStr("s3cret-scrape")
    async with running_api(settings) as (app, client):
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
        key = (await new_tenant_key(app))["Authorization"]  # a tenant's key is not enough
        assert (await client.get("/metrics", headers={"Authorization": key})).status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
        assert ok.status_code == 200 and "arforge_jobs" in ok.text
        assert (await client.get("/healthz")).status_code == 200  # probes stay open
