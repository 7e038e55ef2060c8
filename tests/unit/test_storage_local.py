"""LocalStore: atomic writes, streaming, UTF-8 metadata, and no escape from the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arforge.shared.storage import InvalidKey, LocalStore, ObjectNotFound

HOSTILE_KEYS = [
    "../escape",
    "a/../../escape",
    "/etc/passwd",
    "..",
    ".",
    "",
    "a//b",
    "a/./b",
    "..\\..\\escape",
    "a\\b",
    "a\x00b",
    "uploads/../../../escape",
]


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


async def test_roundtrip_stream_and_metadata(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    name = "cafe\u0301 🎥 \u202eevil.mp4"  # NFD accent, emoji, RTL override
    obj = await store.put_file(
        "uploads/u1/original.mp4", src, content_type="video/mp4", metadata={"filename": name}
    )
    assert obj.size == len(data)

    head = await store.head("uploads/u1/original.mp4")
    assert head is not None
    assert (head.size, head.content_type, head.metadata) == (
        len(data),
        "video/mp4",
        {"filename": name},
    )

    chunks = [c async for c in store.stream("uploads/u1/original.mp4", chunk_size=1 << 20)]
    assert len(chunks) == 4 and max(len(c) for c in chunks) == 1 << 20
    assert b"".join(chunks) == data

    dest = await store.get_file("uploads/u1/original.mp4", tmp_path / "out" / "x.mp4")
    assert dest.read_bytes() == data
    assert list(dest.parent.iterdir()) == [dest]  # no leftover .part file
    assert await store.presigned_url("uploads/u1/original.mp4") is None


async def test_missing_objects(store: LocalStore, tmp_path: Path) -> None:
    assert await store.head("nope/x") is None
    with pytest.raises(ObjectNotFound):
        await store.get_file("nope/x", tmp_path / "x")
    with pytest.raises(ObjectNotFound):
        async for _ in store.stream("nope/x"):
            pass
    assert not (tmp_path / "x").exists()


async def test_overwrite_is_atomic_and_leaves_no_temp(store: LocalStore) -> None:
    await store.put_bytes("jobs/j/a.txt", b"one", content_type="text/plain")
    await store.put_bytes("jobs/j/a.txt", b"two!", content_type="text/csv")
    head = await store.head("jobs/j/a.txt")
    assert head is not None and (head.size, head.content_type) == (4, "text/csv")
    assert list(store.tmp.iterdir()) == []


async def test_sidecar_is_not_an_object(store: LocalStore) -> None:
    await store.put_bytes(
        "jobs/j/a.glb", b"x", content_type="model/gltf-binary", metadata={"filename": "a"}
    )
    # Only the object lives under objects/; a key cannot name the sidecar.
    objs = all_files(store.objects)
    assert [p.relative_to(store.objects).as_posix() for p in objs] == ["jobs/j/a.glb"]
    assert await store.head("jobs/j/a.glb.json") is None
    assert await store.delete_prefix("jobs/") == 1


@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_hostile_keys_refused_and_nothing_written_outside(
    store: LocalStore, tmp_path: Path, key: str
) -> None:
    before = all_files(tmp_path)
    with pytest.raises(InvalidKey):
        await store.put_bytes(key, b"pwned", content_type="text/plain")
    with pytest.raises(InvalidKey):
        await store.head(key)
    with pytest.raises(InvalidKey):
        await store.get_file(key, tmp_path / "dl")
    assert all_files(tmp_path) == before
    assert not (tmp_path / "escape").exists()


async def test_symlink_inside_root_cannot_lead_outside(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.objects / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey):
        await store.put_bytes("link/x", b"pwned", content_type="text/plain")
    assert list(outside.iterdir()) == []


async def test_delete_prefix_string_semantics(store: LocalStore) -> None:
    for k in ["uploads/ab/1", "uploads/ab/2/3", "uploads/abc/1", "uploads/b/1"]:
        await store.put_bytes(k, b"x", content_type="text/plain", metadata={"k": "v"})
    assert await store.delete_prefix("uploads/ab/") == 2
    assert await store.head("uploads/ab/1") is None
    assert await store.head("uploads/abc/1") is not None
    assert not (store.objects / "uploads" / "ab").exists()  # empty dirs removed
    assert await store.delete_prefix("uploads/a") == 1  # plain string prefix, like S3
    assert await store.head("uploads/b/1") is not None
    with pytest.raises(InvalidKey):
        await store.delete_prefix("")
    with pytest.raises(InvalidKey):
        await store.delete_prefix("../")
    assert await store.delete_prefix("nothing/here/") == 0


async def test_metadata_rules(store: LocalStore) -> None:
    with pytest.raises(ValueError):
        await store.put_bytes("a", b"x", content_type="t", metadata={"Bad Name": "v"})
    with pytest.raises(ValueError):
        await store.put_bytes("a", b"x", content_type="t", metadata={"filename": "é" * 2000})
    assert await store.head("a") is None


async def test_object_and_prefix_conflict(store: LocalStore) -> None:
    await store.put_bytes("a/b", b"x", content_type="t")
    with pytest.raises(InvalidKey):
        await store.put_bytes("a/b/c", b"x", content_type="t")
    with pytest.raises(InvalidKey):
        await store.put_bytes("a", b"x", content_type="t")
    head = await store.head("a/b")
    assert head is not None and head.size == 1
