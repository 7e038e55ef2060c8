"""The job routes against a real PostgreSQL and a real nats-server (in-process ASGI client)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from arforge.api.testing import api_settings, insert_upload, new_tenant_key, running_api
from arforge.api.tracker.store import record_event
from arforge.shared.contracts import Event, JobMessage, job_event


@pytest.fixture
async def api(nats_server, fresh_db: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    async with running_api(settings) as (app, client):
        yield app, client


def assert_error(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) >= {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def submit(client, headers, inputs, **extra):  # type: ignore[no-untyped-def]
    body = {"type": "photogrammetry", "inputs": inputs, "params": {"quality": "draft"}, **extra}
    return await client.post("/v1/jobs", json=body, headers=headers)


async def feed(app, job: dict, *events: Event) -> None:  # type: ignore[no-untyped-def]
    async with app.state.pool.acquire() as conn:
        for e in events:
            await record_event(conn, e)


def ref(job: dict) -> dict:
    return {"job_id": job["id"], "type": job["type"], "tenant_id": "t", "run": job["run"]}


async def test_missing_or_invalid_key_is_401(api) -> None:  # type: ignore[no-untyped-def]
    _, client = api
    err = assert_error(await client.get("/v1/jobs"), 401, "unauthorized")
    assert "Bearer" in err["message"]
    bad = {"Authorization": "Bearer afk_not-a-real-key"}
    assert_error(await client.get("/v1/jobs", headers=bad), 401, "unauthorized")
    err = assert_error(
        await client.get("/v1/jobs", headers={"Authorization": "Basic dTpw"}), 401, "unauthorized"
    )
    assert "'Basic'" in err["message"] and "use Authorization: Bearer <key>" in err["message"]
    assert "missing" not in err["message"]


async def test_submit_stores_job_and_publishes_message(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h, kind="video", size=4096)
    resp = await submit(client, h, [up], priority="high")
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["status"] == "queued" and job["run"] == 1 and job["attempt"] == 0
    assert job["priority"] == "high"
    # defaults filled in by the contract
    assert job["params"]["quality"] == "draft" and job["params"]["max_frames"] == 150
    assert job["inputs"][0]["upload_id"] == up and job["inputs"][0]["kind"] == "video"
    assert job["inputs"][0]["key"] == f"uploads/{up}/source.mp4"

    got = await client.get(f"/v1/jobs/{job['id']}", headers=h)
    assert got.status_code == 200 and got.json()["id"] == job["id"]

    raw = await app.state.bus.js.get_last_msg("JOBS", "jobs.photogrammetry.high")
    msg = JobMessage.model_validate_json(raw.data)
    assert (msg.job_id, msg.run, msg.params["quality"]) == (job["id"], 1, "draft")
    assert msg.inputs[0].size == 4096


async def test_validation_errors_have_field_lists(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)

    err = assert_error(
        await submit(client, h, [up], params={"max_frames": 1, "quality": "ultra"}),
        422,
        "validation_error",
    )
    locs = {tuple(f["loc"]) for f in err["fields"]}
    assert locs == {("body", "params", "max_frames"), ("body", "params", "quality")}
    assert all(f["message"] and f["type"] for f in err["fields"])
    # a boolean or a numeric string is not an integer (strict params)
    for value in (True, "60", 60.0):
        err = assert_error(
            await submit(client, h, [up], params={"max_frames": value}), 422, "validation_error"
        )
        assert [f["loc"] for f in err["fields"]] == [["body", "params", "max_frames"]]

    err = assert_error(
        await client.post("/v1/jobs", json={"inputs": "x"}, headers=h), 422, "validation_error"
    )
    assert {tuple(f["loc"]) for f in err["fields"]} >= {("body", "type"), ("body", "inputs")}

    err = assert_error(await submit(client, h, [up], type="teleport"), 422, "unknown_job_type")
    assert "photogrammetry" in err["message"]

    # listed in the contracts, but no worker exists in this version: refused, not queued
    for kind, jtype in [("video", "splatting"), ("image", "ai-vision"), ("glb", "mesh")]:
        inp = await insert_upload(app, h, kind=kind)
        err = assert_error(
            await submit(client, h, [inp], type=jtype, params={}), 422, "job_type_unavailable"
        )
        assert err["message"] == f"no worker for job type {jtype!r} exists in this version"

    assert_error(await submit(client, h, []), 422, "invalid_inputs")
    assert_error(await submit(client, h, [str(uuid.uuid4())]), 422, "invalid_inputs")
    assert_error(await submit(client, h, ["not-a-uuid"]), 422, "invalid_inputs")
    assert_error(await submit(client, h, [up, up]), 422, "invalid_inputs")
    glb = await insert_upload(app, h, kind="glb")
    err = assert_error(await submit(client, h, [glb]), 422, "invalid_inputs")
    assert "glb" in err["message"]
    # another tenant's upload is as good as missing
    other = await new_tenant_key(app)
    theirs = await insert_upload(app, other)
    assert_error(await submit(client, h, [theirs]), 422, "invalid_inputs")
    assert await app.state.pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_input_sets_that_cannot_make_a_model_are_refused_at_submit(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    photos = [await insert_upload(app, h, kind="image") for _ in range(3)]
    video = await insert_upload(app, h)
    err = assert_error(await submit(client, h, photos[:1]), 422, "invalid_inputs")
    assert err["message"] == "photogrammetry needs at least 3 overlapping photos, got 1"
    err = assert_error(await submit(client, h, [video, photos[0]]), 422, "invalid_inputs")
    assert "video must be the only input" in err["message"]
    assert (await submit(client, h, photos)).status_code == 201
    assert (await submit(client, h, [video])).status_code == 201


async def test_an_upload_whose_file_is_gone_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    assert await app.state.store.delete_prefix(f"uploads/{up}/") == 1
    err = assert_error(await submit(client, h, [up]), 422, "input_missing")
    assert up in err["message"] and "upload it again" in err["message"]
    assert await app.state.pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_unimplemented_types_stay_in_openapi(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    assert not app.state.registry["splatting"].implemented
    text = (await client.get("/openapi.json")).text
    for name in ("splatting", "ai-vision", "ai-generation", "mesh", "job_type_unavailable"):
        assert name in text


async def test_default_404_405_shapes(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    assert_error(await client.get("/v1/nothing-here", headers=h), 404, "not_found")
    assert_error(await client.delete("/v1/jobs", headers=h), 405, "method_not_allowed")
    assert_error(await client.get("/v1/jobs/not-a-uuid", headers=h), 404, "not_found")


async def test_other_tenants_job_is_404(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    a = await new_tenant_key(app, "alpha")
    b = await new_tenant_key(app, "beta")
    job = (await submit(client, a, [await insert_upload(app, a)])).json()
    jid = job["id"]
    assert (await client.get(f"/v1/jobs/{jid}", headers=a)).status_code == 200
    assert_error(await client.get(f"/v1/jobs/{jid}", headers=b), 404, "not_found")
    assert_error(await client.post(f"/v1/jobs/{jid}/cancel", headers=b), 404, "not_found")
    assert_error(await client.post(f"/v1/jobs/{jid}/retry", headers=b), 404, "not_found")
    assert_error(await client.get(f"/v1/jobs/{jid}/events", headers=b), 404, "not_found")
    assert_error(
        await client.get(f"/v1/jobs/{jid}/artifacts/model.glb", headers=b), 404, "not_found"
    )
    assert (await client.get("/v1/jobs", headers=b)).json()["items"] == []
    # still queued: B's cancel attempt did nothing
    assert (await client.get(f"/v1/jobs/{jid}", headers=a)).json()["status"] == "queued"


async def test_idempotency_key_gives_one_job(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    hk = {**h, "Idempotency-Key": "order-42"}
    first = await submit(client, hk, [up])
    second = await submit(client, hk, [up])
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert await app.state.pool.fetchval("SELECT count(*) FROM jobs") == 1
    info = await app.state.bus.js.stream_info("JOBS")
    assert info.state.messages == 1

    err = assert_error(await submit(client, hk, [up], priority="low"), 409, "idempotency_conflict")
    assert "Idempotency-Key" in err["message"] and first.json()["id"] in err["message"]
    assert err["details"] == {"job_id": first.json()["id"]}
    # the same key is a different namespace for another tenant
    other = await new_tenant_key(app)
    up2 = await insert_upload(app, other)
    third = await submit(client, {**other, "Idempotency-Key": "order-42"}, [up2])
    assert third.status_code == 201 and third.json()["id"] != first.json()["id"]


async def test_cancel_queued_then_finished_is_409(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    job = (await submit(client, h, [await insert_upload(app, h)])).json()
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    assert resp.status_code == 202 and resp.json()["status"] == "cancelled"
    assert await app.state.bus.is_cancel_requested(job["id"], 1)
    raw = await app.state.bus.js.get_last_msg("EVENTS", "events.job.cancelled.photogrammetry")
    assert Event.model_validate_json(raw.data).subject == job["id"]
    err = assert_error(
        await client.post(f"/v1/jobs/{job['id']}/cancel", headers=h), 409, "job_finished"
    )
    assert "cancelled" in err["message"]

    done = (await submit(client, h, [await insert_upload(app, h)])).json()
    await feed(
        app,
        done,
        job_event("started", ref(done), source="t", attempt=1),
        job_event("completed", ref(done), source="t", attempt=1, result={"artifacts": []}),
    )
    assert_error(await client.post(f"/v1/jobs/{done['id']}/cancel", headers=h), 409, "job_finished")


async def test_cancel_running_job_only_requests(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    job = (await submit(client, h, [await insert_upload(app, h)])).json()
    await feed(app, job, job_event("started", ref(job), source="t", attempt=1))
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    assert resp.status_code == 202 and resp.json()["status"] == "started"
    assert await app.state.bus.is_cancel_requested(job["id"], 1)


async def test_cancel_retrying_job_is_cancelled_at_once(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    job = (await submit(client, h, [await insert_upload(app, h)])).json()
    await feed(
        app,
        job,
        job_event("started", ref(job), source="t", attempt=1),
        job_event(
            "retrying",
            ref(job),
            source="t",
            attempt=1,
            error={"code": "timeout", "message": "slow"},
            delay_s=60.0,
        ),
    )
    before = (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()
    assert before["status"] == "retrying"
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)
    assert resp.status_code == 202 and resp.json()["status"] == "cancelled"
    assert await app.state.bus.is_cancel_requested(job["id"], 1)
    got = (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()
    assert got["status"] == "cancelled" and got["finished_at"] is not None
    assert got["error"] is None  # the retrying attempt's timeout is not the job's outcome


async def test_progress_reads_back_without_float4_noise(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    job = (await submit(client, h, [await insert_upload(app, h)])).json()
    await feed(
        app,
        job,
        job_event("started", ref(job), source="t", attempt=1),
        job_event("progress", ref(job), source="t", attempt=1, seq=1, fraction=0.1137, stage="sfm"),
    )
    got = (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()
    assert got["progress"] == {"fraction": 0.1137, "stage": "sfm"}


async def test_retry_starts_a_new_run(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    job = (await submit(client, h, [await insert_upload(app, h)])).json()
    assert_error(
        await client.post(f"/v1/jobs/{job['id']}/retry", headers=h), 409, "job_not_retryable"
    )
    await feed(
        app,
        job,
        job_event(
            "failed",
            ref(job),
            source="t",
            attempt=1,
            error={"code": "bad_input", "message": "no frames"},
        ),
    )
    failed = (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()
    assert failed["error"] == {"code": "bad_input", "message": "no frames"}
    resp = await client.post(f"/v1/jobs/{job['id']}/retry", headers=h)
    assert resp.status_code == 202, resp.text
    again = resp.json()
    assert (again["status"], again["run"], again["error"]) == ("queued", 2, None)
    raw = await app.state.bus.js.get_last_msg("JOBS", "jobs.photogrammetry.default")
    assert JobMessage.model_validate_json(raw.data).run == 2
    # a late event of run 1 does not touch run 2
    await feed(
        app, job, job_event("completed", ref(job), source="t", attempt=2, result={"artifacts": []})
    )
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()["status"] == "queued"


async def test_retry_of_a_cancelled_job_keeps_its_old_run_cancelled(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    bus = app.state.bus
    h = await new_tenant_key(app)
    job = (await submit(client, h, [await insert_upload(app, h)])).json()
    assert (await client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)).status_code == 202
    retried = await client.post(f"/v1/jobs/{job['id']}/retry", headers=h)
    assert retried.status_code == 202 and retried.json()["run"] == 2
    # run 1's message is still in JOBS: workers must drop it; run 2 must run
    assert await bus.cancelled_through(job["id"]) == 1
    assert await bus.is_cancel_requested(job["id"], 1)
    assert not await bus.is_cancel_requested(job["id"], 2)
    assert (await client.post(f"/v1/jobs/{job['id']}/cancel", headers=h)).status_code == 202
    assert await bus.cancelled_through(job["id"]) == 2


async def test_cursor_pagination(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    up = await insert_upload(app, h)
    ids = [(await submit(client, h, [up])).json()["id"] for _ in range(7)]
    # same created_at for two rows: the id breaks the tie without skipping either
    await app.state.pool.execute(
        "UPDATE jobs SET created_at = (SELECT created_at FROM jobs WHERE id = $1) WHERE id = $2",
        uuid.UUID(ids[3]),
        uuid.UUID(ids[4]),
    )
    seen, pages, cursor = [], [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/jobs", params=params, headers=h)).json()
        pages.append(len(page["items"]))
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [3, 3, 1]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 7
    assert seen[0] == ids[-1]  # newest first
    filtered = (await client.get("/v1/jobs", params={"status": "cancelled"}, headers=h)).json()
    assert filtered == {"items": [], "next_cursor": None}
    assert_error(
        await client.get("/v1/jobs", params={"cursor": "%%%"}, headers=h), 422, "invalid_cursor"
    )
    assert_error(
        await client.get("/v1/jobs", params={"limit": 0}, headers=h), 422, "validation_error"
    )
    for bad in ({"status": "bogus"}, {"status": "progress"}, {"type": "nope"}):
        err = assert_error(
            await client.get("/v1/jobs", params=bad, headers=h), 422, "validation_error"
        )
        (name,) = bad
        assert err["fields"][0]["loc"] == ["query", name] and bad[name] in err["message"]
    ok = await client.get("/v1/jobs", params={"status": "queued", "type": "mesh"}, headers=h)
    assert ok.status_code == 200 and ok.json()["items"] == []
    ok = await client.get(
        "/v1/jobs", params={"status": "queued", "type": "photogrammetry"}, headers=h
    )
    assert len(ok.json()["items"]) == 7


async def test_events_stream_history_until_terminal(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    job = (await submit(client, h, [await insert_upload(app, h)])).json()
    r = ref(job)
    await feed(
        app,
        job,
        job_event("started", r, source="w", attempt=1),
        job_event("progress", r, source="w", attempt=1, seq=1, fraction=0.5, stage="sfm"),
        job_event("completed", r, source="w", attempt=1, result={"artifacts": [], "sfm": None}),
    )
    resp = await client.get(f"/v1/jobs/{job['id']}/events", headers=h)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in resp.text.split("\n\n") if b.startswith("id:")]
    types = [next(ln for ln in b.splitlines() if ln.startswith("event:"))[7:] for b in blocks]
    assert types == ["job.started", "job.progress", "job.completed"]
    data = Event.model_validate_json(blocks[1].split("data: ", 1)[1])
    assert data.data["fraction"] == 0.5 and data.subject == job["id"]
    # resume after the first event
    first_id = blocks[0].split("\n")[0][4:]
    resp = await client.get(
        f"/v1/jobs/{job['id']}/events", headers={**h, "Last-Event-ID": first_id}
    )
    assert resp.text.count("\nevent: ") == 2


async def test_artifact_download_streams_from_local_store(api) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    job = (await submit(client, h, [await insert_upload(app, h)])).json()
    key = f"jobs/{job['id']}/model.glb"
    payload = b"glTF" + bytes(range(256)) * 4
    await app.state.store.put_bytes(key, payload, content_type="model/gltf-binary")
    art = {
        "name": "model.glb",
        "key": key,
        "content_type": "model/gltf-binary",
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    await feed(
        app,
        job,
        job_event("completed", ref(job), source="w", attempt=1, result={"artifacts": [art]}),
    )
    resp = await client.get(f"/v1/jobs/{job['id']}/artifacts/model.glb", headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.content == payload
    assert resp.headers["content-type"] == "model/gltf-binary"
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["content-disposition"] == 'attachment; filename="model.glb"'
    etag = resp.headers["etag"]
    assert etag == f'"{hashlib.sha256(payload).hexdigest()}"'  # the artifact's SHA-256
    url = f"/v1/jobs/{job['id']}/artifacts/model.glb"

    async def get(**hdrs: str) -> httpx.Response:
        return await client.get(url, headers={**h, **hdrs})

    # a byte range (AR Quick Look and download managers ask for them; resumable downloads)
    part = await get(Range="bytes=4-131")
    assert part.status_code == 206, part.text
    assert part.content == payload[4:132]
    assert part.headers["content-range"] == f"bytes 4-131/{len(payload)}"
    assert part.headers["content-length"] == "128"
    tail = await get(Range="bytes=-10")
    assert tail.status_code == 206 and tail.content == payload[-10:]
    opened = await get(Range="bytes=1000-")
    assert opened.status_code == 206 and opened.content == payload[1000:]
    clamped = await get(Range="bytes=1020-99999")
    assert clamped.headers["content-range"] == f"bytes 1020-{len(payload) - 1}/{len(payload)}"
    # malformed, reversed or several ranges: the whole file, as the RFC allows
    for bad in ("bytes=abc", "bytes=100-50", "items=0-5", "bytes=0-1,5-6"):
        whole = await get(Range=bad)
        assert (whole.status_code, whole.content) == (200, payload), bad
    beyond = await get(Range=f"bytes={len(payload) + 5}-")
    err = assert_error(beyond, 416, "range_not_satisfiable")
    assert f"({len(payload)} bytes)" in err["message"]
    assert beyond.headers["content-range"] == f"bytes */{len(payload)}"
    # validators: 304 for the same ETag; If-Range with another tag ignores the range
    same = await get(**{"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    assert (await get(**{"If-None-Match": '"other"'})).status_code == 200
    stale = await get(Range="bytes=0-3", **{"If-Range": '"older"'})
    assert (stale.status_code, stale.content) == (200, payload)
    fresh = await get(Range="bytes=0-3", **{"If-Range": etag})
    assert (fresh.status_code, fresh.content) == (206, b"glTF")
    # HEAD: the headers of the GET, no body
    head = await client.head(url, headers=h)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(payload)) and head.headers["etag"] == etag
    assert_error(
        await client.get(f"/v1/jobs/{job['id']}/artifacts/nope.usdz", headers=h),
        404,
        "artifact_not_found",
    )
