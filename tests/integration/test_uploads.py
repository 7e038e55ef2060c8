"""POST/GET /v1/uploads through the real app: PostgreSQL, nats-server, local storage.

Cases Q-01 (size cap, early 413, temp files cleaned), Q-02 (sniffed, not trusted),
Q-03 (hostile filenames), V-06 (audio-only / empty).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from media_samples import encode_aac_only, encode_video, glb_bytes, image_bytes, zip_bytes

from arforge.api.testing import api_settings, new_tenant_key, running_api
from arforge.shared.storage import LocalStore

CASES = Path(__file__).resolve().parents[2].parent / "shared" / "cases"
CAP = 512 * 1024  # max_upload_bytes for these tests


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory the route spools bodies into (the process temp dir, redirected)."""
    d = tmp_path / "spool"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture
async def api(nats_server, fresh_db: str, tmp_path: Path, spool: Path):  # type: ignore[no-untyped-def]
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    settings.max_upload_bytes = CAP
    async with running_api(settings) as (app, client):
        yield app, client


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return encode_video(tmp_path_factory.mktemp("v") / "a.mp4", fmt="mp4").read_bytes()


def multipart(
    filename: bytes | None,
    data: bytes,
    *,
    ctype: bytes = b"application/octet-stream",
    fields: dict[str, bytes] | None = None,
    boundary: bytes = b"arforgeBoundary7MA4YWxk",
    close: bool = True,
) -> tuple[bytes, dict[str, str]]:
    """A multipart body built byte by byte (exact control over the filename bytes)."""
    out = b""
    for name, value in (fields or {}).items():
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        out += value + b"\r\n"
    out += b"--" + boundary + b"\r\n"
    disp = b'Content-Disposition: form-data; name="file"'
    if filename is not None:
        disp += b'; filename="' + filename + b'"'
    out += disp + b"\r\nContent-Type: " + ctype + b"\r\n\r\n" + data + b"\r\n"
    if close:
        out += b"--" + boundary + b"--\r\n"
    headers = {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}
    return out, headers


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and err["message"]
    return err  # type: ignore[no-any-return]


async def assert_nothing_stored(app: Any, tmp_path: Path, spool: Path) -> None:
    store: LocalStore = app.state.store
    assert files_under(store.objects) == set()
    assert files_under(spool) == set()
    assert await app.state.pool.fetchval("SELECT count(*) FROM uploads") == 0


# --- the happy path ------------------------------------------------------------------


async def test_video_upload_roundtrip(api, mp4: bytes, tmp_path: Path, spool: Path) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    resp = await client.post(
        "/v1/uploads", files={"file": ("walk around.MP4", mp4, "video/mp4")}, headers=h
    )
    assert resp.status_code == 201, resp.text
    up = resp.json()
    assert set(up) == {"id", "kind", "content_type", "size", "filename", "sha256", "created_at"}
    assert (up["kind"], up["content_type"], up["size"]) == ("video", "video/mp4", len(mp4))
    assert up["filename"] == "walk around.MP4"
    import hashlib

    assert up["sha256"] == hashlib.sha256(mp4).hexdigest()

    got = await client.get(f"/v1/uploads/{up['id']}", headers=h)
    assert got.status_code == 200 and got.json() == up

    key = await app.state.pool.fetchval(
        "SELECT key FROM uploads WHERE id = $1", uuid.UUID(up["id"])
    )
    assert key == f"uploads/{up['id']}/original.mp4"
    head = await app.state.store.head(key)
    assert head.size == len(mp4) and head.content_type == "video/mp4"
    assert head.metadata["filename"] == "walk around.MP4"
    assert b"".join([c async for c in app.state.store.stream(key)]) == mp4
    assert files_under(spool) == set()


@pytest.mark.parametrize(
    ("name", "data", "kind", "ctype"),
    [
        ("p.png", lambda: image_bytes("PNG"), "image", "image/png"),
        ("p.jpg", lambda: image_bytes("JPEG"), "image", "image/jpeg"),
        ("p.webp", lambda: image_bytes("WEBP"), "image", "image/webp"),
        (
            "shots.zip",
            lambda: zip_bytes({"a.jpg": image_bytes("JPEG"), "b.png": image_bytes("PNG")}),
            "images_zip",
            "application/zip",
        ),
        ("box.glb", glb_bytes, "glb", "model/gltf-binary"),
        ("no-extension", glb_bytes, "glb", "model/gltf-binary"),
    ],
)
async def test_other_kinds(api, name: str, data: Any, kind: str, ctype: str) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    resp = await client.post("/v1/uploads", files={"file": (name, data())}, headers=h)
    assert resp.status_code == 201, resp.text
    assert (resp.json()["kind"], resp.json()["content_type"]) == (kind, ctype)


# --- size cap -------------------------------------------------------------------


async def test_content_length_over_cap_is_413_and_nothing_stored(  # type: ignore[no-untyped-def]
    api, tmp_path: Path, spool: Path
) -> None:
    app, client = api
    h = await new_tenant_key(app)
    body, headers = multipart(b"big.mp4", b"\x00" * (3 * CAP))
    resp = await client.post("/v1/uploads", content=body, headers={**h, **headers})
    err = assert_error(resp, 413, "upload_too_large")
    assert "512.0 KiB (524288 bytes)" in err["message"]
    await assert_nothing_stored(app, tmp_path, spool)


async def test_streamed_body_over_cap_stops_early(api, tmp_path: Path, spool: Path) -> None:  # type: ignore[no-untyped-def]
    """No Content-Length (chunked): the running count trips the cap; the rest is never read."""
    app, client = api
    h = await new_tenant_key(app)
    head, headers = multipart(b"big.mp4", b"", close=False)
    head = head[: -len(b"\r\n")]  # keep the part open
    sent = 0
    total = 64 * 1024 * 1024

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield head
        chunk = b"\x00" * 65536
        while sent < total:
            sent += len(chunk)
            yield chunk

    resp = await client.post("/v1/uploads", content=body(), headers={**h, **headers})
    assert_error(resp, 413, "upload_too_large")
    assert resp.headers.get("connection") == "close"
    assert sent < CAP + 4 * 65536, f"server read {sent} bytes of a {total}-byte body"
    await assert_nothing_stored(app, tmp_path, spool)


async def test_large_text_field_is_413(api, tmp_path: Path, spool: Path, mp4: bytes) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    body, headers = multipart(b"a.mp4", mp4, fields={"declared_kind": b"v" * (2 * 1024 * 1024)})
    # Within the body allowance when the cap is large, so the field limit itself answers.
    app.state.settings.max_upload_bytes = 8 * 1024 * 1024
    resp = await client.post("/v1/uploads", content=body, headers={**h, **headers})
    assert_error(resp, 413, "field_too_large")
    await assert_nothing_stored(app, tmp_path, spool)


@contextlib.asynccontextmanager
async def uvicorn_api(settings: Any) -> AsyncIterator[tuple[Any, int]]:
    """The app served by a real uvicorn on a free port: ``(app, port)``."""
    from conftest import free_port

    from arforge.api.app import create_app

    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn failed to start"
            await asyncio.sleep(0.05)
        yield app, port
    finally:
        server.should_exit = True
        await task


def raw_head(auth: str, length: int) -> bytes:
    return (
        "POST /v1/uploads HTTP/1.1\r\nHost: api\r\n"
        f"Authorization: {auth}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {length}\r\n\r\n"
        '--xyz\r\nContent-Disposition: form-data; name="file"; filename="sparse.mp4"\r\n\r\n'
    ).encode()


async def test_over_cap_via_real_socket(  # type: ignore[no-untyped-def]
    nats_server, fresh_db: str, tmp_path: Path, spool: Path
) -> None:
    """Over a real HTTP connection (uvicorn): a 'sparse 10 GiB' upload announced by
    Content-Length is refused after its headers; the client never has to send the body."""
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    settings.max_upload_bytes = CAP
    async with uvicorn_api(settings) as (app, port):
        h = await new_tenant_key(app)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_head(h["Authorization"], 10 * 1024**3))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        assert b" 413 " in status_line
        rest = await asyncio.wait_for(reader.read(65536), timeout=10)
        assert b"upload_too_large" in rest
        writer.close()
        assert files_under(tmp_path / "store" / "objects") == set()
        assert files_under(spool) == set()


async def test_client_disconnect_mid_upload_cleans_spool(  # type: ignore[no-untyped-def]
    nats_server, fresh_db: str, tmp_path: Path, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    settings.max_upload_bytes = CAP
    async with uvicorn_api(settings) as (app, port):
        h = await new_tenant_key(app)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_head(h["Authorization"], CAP // 2) + b"\x00" * (CAP // 4))
        await writer.drain()
        for _ in range(100):  # the spool file appears while the body streams in
            if files_under(spool):
                break
            await asyncio.sleep(0.05)
        assert len(files_under(spool)) == 1
        writer.close()  # the client goes away mid-body
        for _ in range(100):
            if not files_under(spool):
                break
            await asyncio.sleep(0.05)
        assert files_under(spool) == set()
        assert files_under(tmp_path / "store" / "objects") == set()
        assert await app.state.pool.fetchval("SELECT count(*) FROM uploads") == 0
    # a hang-up is logged as such, not as a server error with a traceback
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "client disconnected during POST /v1/uploads" in caplog.text


# --- Q-02 / V-06: sniffed, not trusted ------------------------------------------------


async def test_spoofed_and_broken_content(api, tmp_path: Path, spool: Path) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    fx = CASES / "fixtures"

    async def post(name: str, data: bytes, **form: str) -> Any:
        return await client.post(
            "/v1/uploads", files={"file": (name, data)}, data=form or None, headers=h
        )

    html = (fx / "actually_html.mp4").read_bytes()
    assert_error(await post("actually_html.mp4", html), 415, "unsupported_media_type")
    png_mov = (fx / "actually_png.mov").read_bytes()
    err = assert_error(await post("actually_png.mov", png_mov), 415, "content_mismatch")
    assert "video" in err["message"] and "image/png" in err["message"]
    # same bytes, honest name: accepted as the image it is
    ok = await post("actually.png", png_mov)
    assert ok.status_code == 201 and ok.json()["content_type"] == "image/png"
    # declared kind contradicting the content
    err = assert_error(await post("x", png_mov, declared_kind="video"), 415, "content_mismatch")
    assert "declared_kind" in err["message"]
    assert_error(await post("x", png_mov, declared_kind="hologram"), 422, "invalid_declared_kind")
    assert_error(await post("empty.mp4", (fx / "empty.mp4").read_bytes()), 400, "empty_file")
    aac = encode_aac_only(tmp_path / "voice.mp4").read_bytes()
    assert_error(await post("voice.mp4", aac), 422, "no_video_stream")
    bad_zip = zip_bytes({"a.jpg": image_bytes("JPEG"), "run.sh": b"#!/bin/sh\n"})
    assert_error(await post("photos.zip", bad_zip), 415, "unsupported_media_type")
    # only the honest PNG was stored
    assert await app.state.pool.fetchval("SELECT count(*) FROM uploads") == 1
    assert len(files_under(app.state.store.objects)) == 1
    assert files_under(spool) == set()


# --- hostile filenames ----------------------------------------------------------

HOSTILE_OK = [
    "../x.mp4",
    "../../../../../../tmp/pwned.mp4",
    "/etc/passwd",
    "..\\..\\x",
    "C:\\Windows\\x.mp4",
    "clip\u202egpj.mp4",  # right-to-left override: displays as clip4pm.jpg
    "a" * 296 + ".mp4",  # 300 characters
    "🎥🦊 walk-around 📸.mp4",
    "cafe\u0301 de\u0301mo.mp4",  # NFD accents (decomposed), kept as sent
    "名前.mp4",
    "x.mp4; filename=evil.sh",
    "  spaced  .mp4",
]


@pytest.mark.parametrize("name", HOSTILE_OK)
async def test_hostile_filenames_round_trip_with_safe_keys(  # type: ignore[no-untyped-def]
    api, mp4: bytes, tmp_path: Path, spool: Path, name: str
) -> None:
    app, client = api
    h = await new_tenant_key(app)
    escaped = name.replace("\\", "\\\\").encode("utf-8")  # quoted-string escaping
    body, headers = multipart(escaped, mp4)
    before = files_under(tmp_path) - files_under(tmp_path / "store")
    resp = await client.post("/v1/uploads", content=body, headers={**h, **headers})
    assert resp.status_code == 201, resp.text
    up = resp.json()
    assert up["filename"] == name
    assert (await client.get(f"/v1/uploads/{up['id']}", headers=h)).json()["filename"] == name
    key = f"uploads/{up['id']}/original.mp4"
    head = await app.state.store.head(key)
    assert head is not None and head.metadata["filename"] == name
    stored = files_under(tmp_path / "store" / "objects")
    assert stored == {tmp_path / "store" / "objects" / key}
    # nothing appeared anywhere else under the test directory, and nothing at /tmp/pwned.mp4
    after = files_under(tmp_path) - files_under(tmp_path / "store")
    assert after == before
    assert not Path("/tmp/pwned.mp4").exists()


async def test_filename_via_httpx_files(api, mp4: bytes) -> None:  # type: ignore[no-untyped-def]
    """The common client path (httpx's own multipart encoding) round-trips UTF-8 too."""
    app, client = api
    h = await new_tenant_key(app)
    name = "Ame\u0301lie \u202e🎬 ..\\x.mp4"
    resp = await client.post("/v1/uploads", files={"file": (name, mp4)}, headers=h)
    assert resp.status_code == 201, resp.text
    assert resp.json()["filename"] == name


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"evil\x00.mp4", "NUL"),
        (b"", "non-empty"),
        (b"   ", "non-empty"),
        (None, "non-empty"),
        (b"line\nbreak.mp4", "control"),
        ("é".encode() * 600, "1024"),
    ],
)
async def test_bad_filenames_are_400(  # type: ignore[no-untyped-def]
    api, mp4: bytes, tmp_path: Path, spool: Path, raw: bytes | None, why: str
) -> None:
    app, client = api
    h = await new_tenant_key(app)
    body, headers = multipart(raw, mp4)
    err = assert_error(
        await client.post("/v1/uploads", content=body, headers={**h, **headers}),
        400,
        "invalid_filename",
    )
    assert why in err["message"]
    await assert_nothing_stored(app, tmp_path, spool)


# --- request shape, auth, tenancy -----------------------------------------------------


async def test_malformed_requests(api, mp4: bytes, tmp_path: Path, spool: Path) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    h = await new_tenant_key(app)
    assert_error(
        await client.post("/v1/uploads", json={"file": "x"}, headers=h), 400, "invalid_multipart"
    )
    assert_error(
        await client.post("/v1/uploads", files={"other": (None, "x")}, headers=h),
        400,
        "missing_file",
    )
    body, headers = multipart(b"a.mp4", mp4, close=False)
    cut = body[: len(body) // 2]
    assert_error(
        await client.post("/v1/uploads", content=cut, headers={**h, **headers}),
        400,
        "invalid_multipart",
    )
    body, headers = multipart(b"a.mp4", mp4)
    assert_error(
        await client.post("/v1/uploads", content=body, headers=headers), 401, "unauthorized"
    )
    await assert_nothing_stored(app, tmp_path, spool)


async def test_get_is_tenant_scoped(api, mp4: bytes) -> None:  # type: ignore[no-untyped-def]
    app, client = api
    a = await new_tenant_key(app, "alpha")
    b = await new_tenant_key(app, "beta")
    up = (await client.post("/v1/uploads", files={"file": ("a.mp4", mp4)}, headers=a)).json()
    assert (await client.get(f"/v1/uploads/{up['id']}", headers=a)).status_code == 200
    assert_error(await client.get(f"/v1/uploads/{up['id']}", headers=b), 404, "not_found")
    assert_error(await client.get(f"/v1/uploads/{uuid.uuid4()}", headers=a), 404, "not_found")
    assert_error(await client.get("/v1/uploads/not-a-uuid", headers=a), 404, "not_found")


async def test_upload_to_s3_backend(  # type: ignore[no-untyped-def]
    nats_server, fresh_db: str, tmp_path: Path, spool: Path, s3_endpoint: str, mp4: bytes
) -> None:
    """Same route on the S3 backend (moto over HTTP): UTF-8 filename metadata survives the
    ASCII-only S3 headers and the presigned URL serves the exact bytes."""
    import httpx

    from arforge.shared.settings import StorageSettings

    settings = api_settings(nats_server.url, fresh_db, tmp_path / "store")
    settings.storage = StorageSettings(
        backend="s3",
        bucket=f"up-{uuid.uuid4().hex[:10]}",
        endpoint_url=s3_endpoint,
        access_key_id="test",
        secret_access_key="test",
    )
    name = "Amélie ‮🎬 ../../x.mp4"
    async with running_api(settings) as (app, client):
        h = await new_tenant_key(app)
        resp = await client.post("/v1/uploads", files={"file": (name, mp4)}, headers=h)
        assert resp.status_code == 201, resp.text
        up = resp.json()
        key = f"uploads/{up['id']}/original.mp4"
        head = await app.state.store.head(key)
        assert head is not None and head.metadata["filename"] == name
        assert head.content_type == "video/mp4" and head.size == len(mp4)
        url = await app.state.store.presigned_url(key)
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).content == mp4
    assert not (tmp_path / "store").exists()
    assert files_under(spool) == set()
