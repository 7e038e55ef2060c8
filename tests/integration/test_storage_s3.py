"""S3Store against moto's S3 server over real HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from arforge.shared.settings import Settings, StorageSettings
from arforge.shared.storage import InvalidKey, ObjectNotFound, S3Store, make_store


@pytest.fixture
async def s3(s3_endpoint: str) -> AsyncIterator[S3Store]:
    store = S3Store(
        f"arforge-{uuid.uuid4().hex[:12]}",  # fresh bucket, created on first use
        endpoint_url=s3_endpoint,
        region="auto",
        access_key_id="test",
        secret_access_key="test",
    )
    yield store
    await store.close()


async def test_put_file_multipart_stream_head_presign(s3: S3Store, tmp_path: Path) -> None:
    data = os.urandom(19 * 1024 * 1024 + 123)  # > 8 MiB threshold: three-part upload
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    name = "Ame\u0301lie 🎬 \u202etxt.mp4 שלום"
    obj = await s3.put_file(
        "uploads/u1/original.mp4", src, content_type="video/mp4", metadata={"filename": name}
    )
    assert obj.size == len(data)

    head = await s3.head("uploads/u1/original.mp4")
    assert head is not None
    assert head.size == len(data)
    assert head.content_type == "video/mp4"
    assert head.metadata == {"filename": name}

    got = bytearray()
    n = 0
    async for chunk in s3.stream("uploads/u1/original.mp4", chunk_size=1 << 20):
        assert len(chunk) <= 1 << 20
        got += chunk
        n += 1
    assert bytes(got) == data and n >= 19

    dest = await s3.get_file("uploads/u1/original.mp4", tmp_path / "dl" / "x.mp4")
    assert dest.read_bytes() == data
    assert list(dest.parent.iterdir()) == [dest]

    url = await s3.presigned_url("uploads/u1/original.mp4", expires_s=60)
    assert url is not None and "X-Amz-Signature=" in url
    async with httpx.AsyncClient() as client:
        r = await client.get(url)
        assert r.status_code == 200
        assert r.content == data
    # (moto does not verify presigned signatures, so only the shape is checked here.)
    assert "X-Amz-Expires=60" in url and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url


async def test_put_bytes_plain_ascii_metadata_unchanged(s3: S3Store) -> None:
    await s3.put_bytes(
        "jobs/j/a.txt",
        b"hello",
        content_type="text/plain",
        metadata={"filename": "plain.txt", "weird": " spaced ", "enc": "=?UTF-8?B?x?="},
    )
    head = await s3.head("jobs/j/a.txt")
    assert head is not None
    assert head.metadata == {"filename": "plain.txt", "weird": " spaced ", "enc": "=?UTF-8?B?x?="}
    assert [c async for c in s3.stream("jobs/j/a.txt")] == [b"hello"]


async def test_missing_and_invalid(s3: S3Store, tmp_path: Path) -> None:
    assert await s3.head("nope") is None
    with pytest.raises(ObjectNotFound):
        await s3.get_file("nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    for key in ["../x", "/abs", "a\\b", "a\x00b", ""]:
        with pytest.raises(InvalidKey):
            await s3.put_bytes(key, b"x", content_type="text/plain")
    with pytest.raises(InvalidKey):
        await s3.delete_prefix("")


async def test_delete_prefix_paginates(s3: S3Store) -> None:
    # 1005 objects: more than one ListObjectsV2 page and one DeleteObjects batch.
    import asyncio

    sem = asyncio.Semaphore(32)

    async def put(i: int) -> None:
        async with sem:
            await s3.put_bytes(f"jobs/j1/f{i:04d}", b"x", content_type="text/plain")

    await asyncio.gather(*(put(i) for i in range(1005)))
    await s3.put_bytes("jobs/j10/keep", b"x", content_type="text/plain")
    assert await s3.delete_prefix("jobs/j1/") == 1005
    assert await s3.head("jobs/j1/f0000") is None
    assert await s3.head("jobs/j10/keep") is not None
    assert await s3.delete_prefix("jobs/j1/") == 0


async def test_factory_builds_s3_and_local(s3_endpoint: str, tmp_path: Path) -> None:
    settings = Settings(
        storage=StorageSettings(
            backend="s3",
            bucket=f"f-{uuid.uuid4().hex[:10]}",
            endpoint_url=s3_endpoint,
            access_key_id="test",
            secret_access_key="test",
        )
    )
    store = make_store(settings)
    try:
        assert isinstance(store, S3Store)
        await store.put_bytes("a/b", b"1", content_type="text/plain")
        assert (await store.head("a/b")) is not None
    finally:
        await store.close()
    local = make_store(Settings(storage=StorageSettings(backend="local", root=tmp_path / "s")))
    assert await local.presigned_url("a/b") is None


async def test_no_checksum_trailers_for_r2(s3: S3Store, tmp_path: Path) -> None:
    """R2 rejects the CRC32 trailers botocore >= 1.36 adds by default; none may be sent."""
    sent: list[tuple[str, dict[str, str]]] = []

    def capture(request, **_: object) -> None:  # type: ignore[no-untyped-def]
        sent.append((request.url, {k.lower(): str(v) for k, v in request.headers.items()}))

    client = await s3._c()
    client.meta.events.register("before-send.s3", capture)
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(9 * 1024 * 1024))  # multipart: Create/UploadPart/Complete
    await s3.put_file("jobs/j/f.bin", src, content_type="application/octet-stream")
    await s3.put_bytes("jobs/j/g.bin", b"g", content_type="application/octet-stream")
    assert len(sent) >= 5
    for url, headers in sent:
        assert not any(h.startswith("x-amz-checksum-") for h in headers), (url, headers)
        assert "x-amz-sdk-checksum-algorithm" not in headers, (url, headers)
        assert "x-amz-trailer" not in headers, (url, headers)
