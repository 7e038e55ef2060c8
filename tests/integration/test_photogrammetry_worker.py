"""The photogrammetry worker through a real nats-server on the real skull capture: a
GLB and a USDZ that load, with faces and a texture, and a plausible report; bad input
fails the job with a code and the worker lives on."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arforge.photogrammetry.handlers import handle_photogrammetry
from arforge.shared.bus import EVENTS, Bus, connect
from arforge.shared.contracts import Event, InputRef, JobMessage, Registry
from arforge.shared.runtime import Worker
from arforge.shared.settings import WorkerSettings
from arforge.shared.storage import LocalStore

SHARED = Path(__file__).resolve().parents[3] / "shared"
SKULL_VIDEO = SHARED / "data" / "skull" / "skull-walkaround.mp4"
EMPTY = SHARED / "cases" / "fixtures" / "empty.mp4"
SKULL_PHOTOS = SHARED / "data" / "skull" / "images"


async def terminal_event(bus: Bus, job_id: str, timeout: float) -> tuple[Event, list[Event]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await bus.js.stream_info(EVENTS)
        evs = []
        for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
            raw = await bus.js.get_msg(EVENTS, seq)
            ev = Event.model_validate_json(raw.data or b"")
            if ev.subject == job_id:
                evs.append(ev)
        for ev in evs:
            if ev.type in ("job.completed", "job.failed", "job.retrying"):
                return ev, evs
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


async def submit_file(bus: Bus, store: LocalStore, path: Path, kind: str, **params: object) -> str:
    upload_id = str(uuid.uuid4())
    key = f"uploads/{upload_id}/original{path.suffix}"
    obj = await store.put_file(key, path, content_type="video/mp4")
    job_id = str(uuid.uuid4())
    await bus.submit(
        JobMessage(
            job_id=job_id,
            type="photogrammetry",
            tenant_id="t1",
            params=params,
            inputs=[
                InputRef(
                    upload_id=upload_id, key=key, kind=kind, content_type="video/mp4", size=obj.size
                )
            ],
            submitted_at=datetime.now(UTC),
        )
    )
    return job_id


@pytest.fixture
async def worker_env(nats_server, tmp_path: Path):  # type: ignore[no-untyped-def]
    bus = await connect(nats_server.url, name="test")
    await bus.ensure_topology([Registry()["photogrammetry"]], ack_wait_s=10)
    store = LocalStore(tmp_path / "store")
    worker = Worker(
        bus,
        store,
        {"photogrammetry": handle_photogrammetry},
        registry=Registry(),
        settings=WorkerSettings(
            concurrency=1, ack_wait_s=10, idle_poll_s=0.2, workdir=tmp_path / "work"
        ),
    )
    task = asyncio.create_task(worker.run())
    yield bus, store, tmp_path
    worker.shutdown()
    await asyncio.wait_for(task, 60)
    await bus.close()


@pytest.mark.slow
async def test_skull_video_becomes_a_textured_glb_and_usdz(worker_env) -> None:  # type: ignore[no-untyped-def]
    bus, store, tmp = worker_env
    job_id = await submit_file(
        bus,
        store,
        SKULL_VIDEO,
        "video",
        quality="draft",
        target_faces=8000,
        texture_size=512,
        max_image_size=1200,
    )
    ev, evs = await terminal_event(bus, job_id, timeout=900)
    assert ev.type == "job.completed", ev.data
    result = ev.data["result"]
    names = {a["name"]: a for a in result["artifacts"]}
    assert set(names) == {"model.glb", "model.usdz", "preview.png", "report.json"}
    for a in names.values():
        assert a["key"] == f"jobs/{job_id}/{a['name']}" and a["size"] > 0
    sfm = result["sfm"]
    assert sfm["total_images"] == 30 and sfm["registered_images"] >= 28
    assert 0 < sfm["mean_reprojection_error_px"] < 1.0
    assert 1000 < result["faces"] <= 8000

    # progress came in order through the stages
    stages = [e.data["stage"] for e in evs if e.type == "job.progress"]
    fractions = [e.data["fraction"] for e in evs if e.type == "job.progress"]
    assert fractions == sorted(fractions) and len(stages) >= 5

    glb = await store.get_file(names["model.glb"]["key"], tmp / "model.glb")
    import trimesh

    scene = trimesh.load(glb, force="scene")
    mesh = next(iter(scene.geometry.values()))
    assert len(mesh.faces) == result["faces"]
    image = mesh.visual.material.baseColorTexture
    assert image is not None and min(image.size) >= 256
    assert mesh.vertex_normals.shape == mesh.vertices.shape

    usdz = await store.get_file(names["model.usdz"]["key"], tmp / "model.usdz")
    with zipfile.ZipFile(usdz) as z:
        infos = z.infolist()
        assert infos[0].filename.endswith((".usdc", ".usda"))
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(usdz))
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    meshes = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == 1

    report_path = await store.get_file(names["report.json"]["key"], tmp / "report.json")
    report = json.loads(report_path.read_text())
    assert report["ingest"]["kept"] == 30  # a 3 fps one-photo-per-frame video keeps all
    assert report["model"]["texture_coverage"] > 0.8
    assert set(report["timings_s"]) >= {"ingest", "sfm", "model", "total"}
    shutil.rmtree(tmp / "work", ignore_errors=True)


async def submit_photos(
    bus: Bus, store: LocalStore, photos: list[tuple[Path, str]], **params: object
) -> str:
    """Submit ``photos`` [(file, original upload name)] as one photo job, each stored
    under a generated key as the API stores uploads."""
    inputs = []
    for path, filename in photos:
        upload_id = str(uuid.uuid4())
        key = f"uploads/{upload_id}/original{path.suffix}"
        obj = await store.put_file(key, path, content_type="image/jpeg")
        inputs.append(
            InputRef(
                upload_id=upload_id,
                key=key,
                kind="image",
                content_type="image/jpeg",
                filename=filename,
                size=obj.size,
            )
        )
    job_id = str(uuid.uuid4())
    await bus.submit(
        JobMessage(
            job_id=job_id,
            type="photogrammetry",
            tenant_id="t1",
            params=params,
            inputs=inputs,
            submitted_at=datetime.now(UTC),
        )
    )
    return job_id


@pytest.mark.slow
async def test_a_truncated_photo_is_left_out_with_a_warning_naming_it(worker_env) -> None:  # type: ignore[no-untyped-def]
    """Ten skull photos and one cut to 20 KB (an upload that stopped early): the job
    completes from the ten, and the result says which photo was left out and why."""
    bus, store, tmp = worker_env
    photos = [(SKULL_PHOTOS / f"{i}.jpg", f"IMG_00{i}.jpg") for i in range(53, 63)]
    cut = tmp / "cut.jpg"
    cut.write_bytes((SKULL_PHOTOS / "63.jpg").read_bytes()[:20_000])
    job_id = await submit_photos(
        bus,
        store,
        [*photos, (cut, "IMG_0042.jpg")],
        quality="draft",
        target_faces=8000,
        texture_size=512,
        max_image_size=1000,
    )
    ev, _ = await terminal_event(bus, job_id, timeout=600)
    assert ev.type == "job.completed", ev.data
    result = ev.data["result"]
    assert result["warnings"] == [
        "photo IMG_0042.jpg could not be decoded (truncated or damaged) and was left out"
    ]
    assert result["sfm"]["total_images"] == 10
    report_key = next(a["key"] for a in result["artifacts"] if a["name"] == "report.json")
    report = json.loads((await store.get_file(report_key, tmp / "report.json")).read_text())
    assert (report["ingest"]["inputs"], report["ingest"]["kept"]) == (11, 10)
    assert report["ingest"]["rejected"] == [
        {"name": "IMG_0042.jpg", "reason": "could not be decoded (truncated or damaged)"}
    ]
    assert report["warnings"] == result["warnings"]
    shutil.rmtree(tmp / "work", ignore_errors=True)


async def test_empty_upload_fails_with_code_and_worker_lives(worker_env) -> None:  # type: ignore[no-untyped-def]
    bus, store, _ = worker_env
    job_id = await submit_file(bus, store, EMPTY, "video")
    ev, _ = await terminal_event(bus, job_id, timeout=60)
    assert ev.type == "job.failed"
    assert ev.data["error"]["code"] == "empty_file"
    assert "empty" in ev.data["error"]["message"]
