"""Content sniffing on real generated media and the case fixtures (Q-02, V-02, V-06, V-07)."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest
from media_samples import (
    abort_now,
    encode_aac_only,
    encode_video,
    glb_bytes,
    image_bytes,
    patch_codec,
    ply_bytes,
    sleep_forever,
    truncate_in_mdat,
    zip_bytes,
)

from arforge.api.sniff import SniffError, claimed_kinds, sniff, sniff_isolated

CASES = Path(__file__).resolve().parents[2].parent / "shared" / "cases"


def sniff_error(path: Path) -> SniffError:
    with pytest.raises(SniffError) as ei:
        sniff(path)
    return ei.value


# --- video ---------------------------------------------------------------------------


def test_h264_mp4(tmp_path: Path) -> None:
    r = sniff(encode_video(tmp_path / "clip.bin", fmt="mp4"))  # the name plays no part
    assert (r.kind, r.content_type, r.ext) == ("video", "video/mp4", "mp4")
    d = r.details
    assert (d["codec"], d["width"], d["height"], d["frames"]) == ("h264", 64, 48, 12)
    assert d["fps"] == 24.0 and d["duration_s"] == pytest.approx(0.5, abs=0.05)
    assert d["truncated"] is False and d["audio_streams"] == 0


def test_h264_mkv_and_webm(tmp_path: Path) -> None:
    r = sniff(encode_video(tmp_path / "a.mkv", fmt="matroska"))
    assert (r.kind, r.content_type, r.ext, r.details["doctype"]) == (
        "video",
        "video/x-matroska",
        "mkv",
        "matroska",
    )
    w = sniff(encode_video(tmp_path / "a.webm", "libvpx", fmt="webm", frames=4))
    assert (w.content_type, w.ext, w.details["codec"]) == ("video/webm", "webm", "vp8")


@pytest.mark.parametrize("tag", ["hvc1", "hev1"])
def test_hevc_mov_tags(tmp_path: Path, tag: str) -> None:
    """V-02: iPhone-style HEVC in a QuickTime container, tagged hvc1 and hev1."""
    r = sniff(encode_video(tmp_path / "iphone.mov", "libx265", fmt="mov", tag=tag))
    assert (r.kind, r.content_type, r.ext) == ("video", "video/quicktime", "mov")
    assert r.details["codec"] == "hevc" and r.details["frames"] == 12


@pytest.mark.parametrize("fmt", ["mp4", "matroska"])
def test_no_decoder_is_unsupported_codec(tmp_path: Path, fmt: str) -> None:
    """V-02: a codec without a decoder is a clear error at upload, not a worker traceback."""
    src = encode_video(tmp_path / f"src.{fmt}", fmt=fmt)
    e = sniff_error(patch_codec(src, tmp_path / "patched"))
    assert e.code == "unsupported_codec" and e.status == 415


def test_aac_only_mp4(tmp_path: Path) -> None:
    """V-06: audio-only .mp4."""
    e = sniff_error(encode_aac_only(tmp_path / "voice.mp4"))
    assert e.code == "no_video_stream" and e.status == 422
    assert e.details["audio_streams"] == 1


def test_empty_fixture() -> None:
    """V-06: fixtures/empty.mp4 (0 bytes)."""
    e = sniff_error(CASES / "fixtures" / "empty.mp4")
    assert e.code == "empty_file" and e.status == 400


def test_truncated_moov_at_end(tmp_path: Path) -> None:
    """V-07: cut in the middle of mdat with the moov at the end."""
    src = encode_video(tmp_path / "full.mp4", frames=48, size=(128, 96))
    e = sniff_error(truncate_in_mdat(src, tmp_path / "cut.mp4"))
    assert e.code == "corrupt_container" and e.status == 422
    assert "moov" in e.message and "incomplete" in e.message
    assert e.details["truncated"] is True


def test_truncated_faststart_is_accepted_and_flagged(tmp_path: Path) -> None:
    """V-07: a faststart file cut short still opens; the worker decodes up to the break."""
    src = encode_video(tmp_path / "fs.mp4", frames=48, size=(128, 96), faststart=True)
    data = src.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    cut = tmp_path / "fs_cut.mp4"
    cut.write_bytes(data[: len(data) * 3 // 4])
    r = sniff(cut)
    assert r.kind == "video" and r.details["truncated"] is True
    assert sniff(src).details["truncated"] is False


def test_garbage_after_ftyp_is_corrupt(tmp_path: Path) -> None:
    p = tmp_path / "x.mp4"
    p.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomavc1" + b"\xff" * 500)
    e = sniff_error(p)
    assert e.code == "corrupt_container"


# --- the Q-02 fixtures ---------------------------------------------------------------


def test_html_named_mp4_is_unsupported() -> None:
    e = sniff_error(CASES / "fixtures" / "actually_html.mp4")
    assert e.code == "unsupported_media_type" and e.status == 415
    assert "HTML" in e.message


def test_png_named_mov_is_an_image() -> None:
    r = sniff(CASES / "fixtures" / "actually_png.mov")
    assert (r.kind, r.content_type, r.ext) == ("image", "image/png", "png")


# --- images --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "ctype", "ext"),
    [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg"), ("WEBP", "image/webp", "webp")],
)
def test_images(tmp_path: Path, fmt: str, ctype: str, ext: str) -> None:
    p = tmp_path / "img"
    p.write_bytes(image_bytes(fmt, (40, 30)))
    r = sniff(p)
    assert (r.kind, r.content_type, r.ext) == ("image", ctype, ext)
    assert (r.details["width"], r.details["height"]) == (40, 30)


def test_heic_by_brand(tmp_path: Path) -> None:
    p = tmp_path / "IMG_0001"
    # ftyp box: major 'heic', compatible mif1/heic (as written by iPhones), then meta.
    p.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    r = sniff(p)
    assert (r.kind, r.content_type, r.ext) == ("image", "image/heic", "heic")


def test_damaged_png_is_corrupt(tmp_path: Path) -> None:
    data = bytearray(image_bytes("PNG"))
    data[40:60] = b"\x00" * 20  # breaks the IDAT chunk CRC
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    assert sniff_error(p).code == "corrupt_file"


# --- zips ----------------------------------------------------------------------------


def test_zip_of_images(tmp_path: Path) -> None:
    p = tmp_path / "photos.zip"
    p.write_bytes(
        zip_bytes(
            {
                "shots/a.jpg": image_bytes("JPEG"),
                "shots/b.png": image_bytes("PNG"),
                "__MACOSX/shots/._a.jpg": b"\x00\x05\x16\x07 AppleDouble",
                ".DS_Store": b"junk",
            }
        )
    )
    r = sniff(p)
    assert (r.kind, r.content_type, r.ext) == ("images_zip", "application/zip", "zip")
    assert r.details["images"] == 2 and r.details["formats"] == {"jpeg": 1, "png": 1}


def test_zip_with_a_non_image(tmp_path: Path) -> None:
    p = tmp_path / "photos.zip"
    p.write_bytes(zip_bytes({"a.jpg": image_bytes("JPEG"), "notes.txt": b"hello"}))
    e = sniff_error(p)
    assert e.code == "unsupported_media_type" and "notes.txt" in e.message


def test_zip_with_no_images(tmp_path: Path) -> None:
    p = tmp_path / "empty.zip"
    p.write_bytes(zip_bytes({"dir/": b""}))
    assert sniff_error(p).code == "unsupported_media_type"


@pytest.mark.parametrize("name", ["../evil.jpg", "/abs.jpg", "a/../../b.jpg", "C:/x.jpg"])
def test_zip_path_entries_refused(tmp_path: Path, name: str) -> None:
    p = tmp_path / "evil.zip"
    p.write_bytes(zip_bytes({name: image_bytes("JPEG")}))
    e = sniff_error(p)
    assert e.code == "unsafe_archive" and e.status == 422


def test_zip_bomb_ratio_refused(tmp_path: Path) -> None:
    p = tmp_path / "bomb.zip"
    # 64 MiB of zeros deflates ~1000:1; only the central directory is read.
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("a.jpg", "w") as f:
        chunk = b"\x00" * (1 << 20)
        for _ in range(64):
            f.write(chunk)
    assert p.stat().st_size < 200_000
    e = sniff_error(p)
    assert e.code == "unsafe_archive" and "ratio" in e.message


def test_zip_overlapping_entries_refused(tmp_path: Path) -> None:
    """Two central-directory entries pointing at the same local file (Fifield-style bomb)."""
    data = bytearray(zip_bytes({"a.jpg": image_bytes("JPEG")}, stored=True))
    eocd = data.rfind(b"PK\x05\x06")
    cd_size, cd_off = struct.unpack_from("<II", data, eocd + 12)
    cd = bytes(data[cd_off : cd_off + cd_size])
    cd2 = cd.replace(b"a.jpg", b"b.jpg")
    new = data[:cd_off] + cd + cd2
    tail = bytearray(data[eocd:])
    struct.pack_into("<HHII", tail, 8, 2, 2, 2 * cd_size, cd_off)
    p = tmp_path / "overlap.zip"
    p.write_bytes(bytes(new + tail))
    assert len(zipfile.ZipFile(p).infolist()) == 2
    assert sniff_error(p).code == "unsafe_archive"


def test_truncated_zip_is_corrupt(tmp_path: Path) -> None:
    data = zip_bytes({"a.jpg": image_bytes("JPEG"), "b.jpg": image_bytes("JPEG")})
    p = tmp_path / "cut.zip"
    p.write_bytes(data[: len(data) // 2])
    assert sniff_error(p).code == "corrupt_file"


def test_usdz(tmp_path: Path) -> None:
    p = tmp_path / "model"
    p.write_bytes(
        zip_bytes(
            {"scene.usdc": b"PXR-USDC" + b"\x00" * 88, "tex.png": image_bytes("PNG")}, stored=True
        )
    )
    r = sniff(p)
    assert (r.kind, r.content_type, r.ext) == ("usdz", "model/vnd.usdz+zip", "usdz")
    assert r.details["root_layer"] == "scene.usdc"
    p.write_bytes(zip_bytes({"scene.usda": b"#usda 1.0\n" * 50}))  # deflated: not valid USDZ
    assert sniff_error(p).code == "corrupt_file"


# --- 3D ------------------------------------------------------------------------------


def test_glb_from_trimesh(tmp_path: Path) -> None:
    p = tmp_path / "box"
    p.write_bytes(glb_bytes())
    r = sniff(p)
    assert (r.kind, r.content_type, r.ext) == ("glb", "model/gltf-binary", "glb")
    assert r.details["version"] == "2.0" and r.details["meshes"] == 1
    p.write_bytes(glb_bytes()[:-10])  # cut short: header length no longer matches
    assert sniff_error(p).code == "corrupt_file"


def test_gltf_json(tmp_path: Path) -> None:
    p = tmp_path / "m.gltf"
    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": 4, "uri": "data:,abcd"}]}
    p.write_text(json.dumps(doc))
    r = sniff(p)
    assert (r.kind, r.content_type, r.ext) == ("gltf", "model/gltf+json", "gltf")
    doc["buffers"] = [{"byteLength": 4, "uri": "mesh.bin"}]
    p.write_text(json.dumps(doc))
    e = sniff_error(p)
    assert e.code == "gltf_external_resources" and e.details["uris"] == ["mesh.bin"]
    p.write_text(json.dumps({"hello": "world"}))
    assert sniff_error(p).code == "unsupported_media_type"


def test_ply(tmp_path: Path) -> None:
    p = tmp_path / "cloud"
    p.write_bytes(ply_bytes(5))
    r = sniff(p)
    assert (r.kind, r.ext, r.details["vertices"], r.details["format"]) == (
        "ply",
        "ply",
        5,
        "binary_little_endian",
    )


@pytest.mark.parametrize(
    "data",
    [b"hello world", b"\x7fELF\x02\x01\x01" + b"\x00" * 64, b"%PDF-1.7\n", b"GIF89a\x01\x00"],
)
def test_unknown_content(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "x.mp4"
    p.write_bytes(data)
    assert sniff_error(p).code == "unsupported_media_type"


# --- claims --------------------------------------------------------------------------


def test_claimed_kinds() -> None:
    assert claimed_kinds("clip.MOV", None) == [("video", "extension .mov")]
    assert claimed_kinds("photos.zip", "application/octet-stream") == [
        ("images_zip", "extension .zip")
    ]
    assert claimed_kinds("noext", "image/png") == [("image", "Content-Type image/png")]
    assert claimed_kinds("noext", "application/octet-stream") == []
    assert claimed_kinds("archive.tar", None) == []
    assert claimed_kinds("x.mp4", "image/png") == [
        ("video", "extension .mp4"),
        ("image", "Content-Type image/png"),
    ]
    assert claimed_kinds("..\\evil.glb", "") == [("glb", "extension .glb")]


# --- isolation -----------------------------------------------------------------------


async def test_isolated_probe_matches_in_process(tmp_path: Path) -> None:
    video = encode_video(tmp_path / "a.mp4", fmt="mp4")
    assert await sniff_isolated(video) == sniff(video)
    with pytest.raises(SniffError) as ei:
        await sniff_isolated(encode_aac_only(tmp_path / "voice.mp4"))
    assert ei.value.code == "no_video_stream" and ei.value.details["audio_streams"] == 1


async def test_isolated_probe_survives_a_crash_and_a_hang(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"x")
    with pytest.raises(SniffError) as ei:
        await sniff_isolated(p, fn=abort_now)
    assert ei.value.code == "corrupt_file" and "crashed" in ei.value.message
    import time

    t0 = time.monotonic()
    with pytest.raises(SniffError) as ei:
        await sniff_isolated(p, fn=sleep_forever, timeout_s=1.5)
    assert ei.value.code == "corrupt_file" and "within 1.5 s" in ei.value.message
    assert time.monotonic() - t0 < 10
