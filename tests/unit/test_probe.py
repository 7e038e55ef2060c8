"""Video / photo probing: every failure code on a small generated input (CASES V-01..V-07)."""

from __future__ import annotations

import re
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from ingest_media import encode, encode_audio_only, pattern_frame, texture
from PIL import Image

from arforge.photogrammetry.probe import probe_photos, probe_video
from arforge.shared.errors import JobFailed

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = REPO.parent / "shared" / "cases" / "fixtures"
FOX = SHARED_DATA / "fox" / "fox-walkaround.mp4"
SKULL = SHARED_DATA / "skull" / "skull-walkaround.mp4"


def _clip(path: Path, n: int = 30, fps: int = 10, w: int = 160, h: int = 120, **kw) -> Path:
    tex = texture(w, h)
    return encode(path, lambda i: pattern_frame(i, w, h, tex), n=n, fps=fps, **kw)


def _code(exc: pytest.ExceptionInfo[JobFailed]) -> str:
    return exc.value.code


def test_fox_probe_reads_display_rotation_and_counts() -> None:
    p = probe_video(FOX)
    assert (p.codec, p.width, p.height) == ("h264", 1920, 1080)
    assert p.rotation == -90
    assert (p.display_width, p.display_height) == (1080, 1920)
    assert p.frame_count == 200
    assert p.duration_s == pytest.approx(200 / 30, abs=1e-3)
    assert p.avg_fps == pytest.approx(30.0)
    assert not p.vfr and p.hdr is None and not p.truncated


def test_skull_probe_low_frame_rate() -> None:
    p = probe_video(SKULL)
    assert (p.frame_count, p.rotation) == (30, 0)
    assert p.avg_fps == pytest.approx(3.0)
    assert p.duration_s == pytest.approx(10.0, abs=1e-3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_probe_display_size_follows_rotation(tmp_path: Path, rotation: int) -> None:
    p = probe_video(_clip(tmp_path / "r.mp4", w=160, h=96, rotation=rotation))
    assert (p.width, p.height) == (160, 96)
    swapped = rotation in (90, 270)
    assert (p.display_width, p.display_height) == ((96, 160) if swapped else (160, 96))
    assert p.rotation % 360 == rotation


def test_empty_file_fixture() -> None:
    with pytest.raises(JobFailed) as exc:
        probe_video(FIXTURES / "empty.mp4")
    assert _code(exc) == "empty_file"


def test_audio_only_mp4_has_no_video_stream(tmp_path: Path) -> None:
    with pytest.raises(JobFailed) as exc:
        probe_video(encode_audio_only(tmp_path / "tone.mp4"))
    assert _code(exc) == "no_video_stream"
    assert exc.value.details["streams"] == ["audio"]


def test_video_stream_is_chosen_by_type_not_index(tmp_path: Path) -> None:
    """Audio muxed first (stream 0), video second: the video is still found."""
    tex = texture(160, 120)
    path = tmp_path / "av.mkv"
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=44100)
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        for i in range(30):
            for pkt in v.encode(av.VideoFrame.from_ndarray(pattern_frame(i, 160, 120, tex))):
                c.mux(pkt)
            fr = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            fr.sample_rate, fr.pts = 44100, i * 1024
            for pkt in a.encode(fr):
                c.mux(pkt)
        for s in (v, a):
            for pkt in s.encode():
                c.mux(pkt)
    p = probe_video(path)
    assert (p.codec, p.frame_count, p.width) == ("h264", 30, 160)
    assert p.has_audio


def test_truncated_mp4_with_moov_at_end_is_corrupt(tmp_path: Path) -> None:
    """V-07: moov written last; cut in the middle of mdat -> no index at all."""
    path = _clip(tmp_path / "full.mp4", n=40)
    data = path.read_bytes()
    mdat = data.find(b"mdat")
    assert mdat < data.find(b"moov"), "expected moov after mdat"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: mdat + (data.find(b"moov") - mdat) // 2])
    with pytest.raises(JobFailed) as exc:
        probe_video(cut)
    assert _code(exc) == "corrupt_container"
    assert "upload incomplete?" in exc.value.message


def test_truncated_faststart_mp4_is_readable_and_flagged(tmp_path: Path) -> None:
    """V-07: moov first (faststart); cut short -> decodes up to the break, ``truncated``."""
    path = _clip(tmp_path / "fast.mp4", n=60, container_options={"movflags": "faststart"})
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    p = probe_video(cut)
    assert p.truncated
    assert 8 <= p.frame_count < 60


def test_html_saved_as_mp4_is_corrupt_container() -> None:
    with pytest.raises(JobFailed) as exc:
        probe_video(FIXTURES / "actually_html.mp4")
    assert _code(exc) == "corrupt_container"


@pytest.mark.timeout(20)
def test_one_second_clip_is_too_short(tmp_path: Path) -> None:
    """V-05: 1 s, 36 frames, 320x240 -> video_too_short with duration and frames."""
    path = _clip(tmp_path / "short.mp4", n=36, fps=36, w=320, h=240)
    with pytest.raises(JobFailed) as exc:
        probe_video(path)
    assert _code(exc) == "video_too_short"
    assert exc.value.details["frames"] == 36
    assert exc.value.details["duration_s"] == pytest.approx(1.0, abs=0.01)
    assert "36 frames" in exc.value.message


def test_unknown_fourcc_is_unsupported_codec(tmp_path: Path) -> None:
    """An AVI whose codec FourCC no decoder knows."""
    path = _clip(tmp_path / "a.avi", codec="mpeg4")
    data = path.read_bytes()
    fourcc = re.search(rb"vids(....)", data)
    assert fourcc is not None
    bad = tmp_path / "bad.avi"
    bad.write_bytes(data.replace(fourcc.group(1), b"ZQX9"))
    with pytest.raises(JobFailed) as exc:
        probe_video(bad)
    assert _code(exc) == "unsupported_codec"


def test_resolution_limit(tmp_path: Path) -> None:
    path = _clip(tmp_path / "big.mp4", w=320, h=240)
    assert probe_video(path, max_pixels=320 * 240).width == 320
    with pytest.raises(JobFailed) as exc:
        probe_video(path, max_pixels=320 * 240 - 1)
    assert _code(exc) == "resolution_too_high"
    assert (exc.value.details["width"], exc.value.details["height"]) == (320, 240)


def test_variable_frame_rate_is_detected(tmp_path: Path) -> None:
    """V-04: 60 fps for 2 s, then every 4th frame for 2 s (150 frames, 4 s)."""
    pts = list(range(120)) + list(range(120, 240, 4))
    tex = texture(160, 120)
    path = encode(
        tmp_path / "vfr.mp4",
        lambda i: pattern_frame(pts[i], 160, 120, tex),
        n=len(pts),
        fps=60,
        pts=pts,
        time_base=Fraction(1, 60),
    )
    p = probe_video(path)
    assert p.vfr
    assert p.frame_count == 150
    assert p.duration_s == pytest.approx(4.0, abs=0.1)


@pytest.mark.parametrize("tag", ["hvc1", "hev1"])
def test_hevc_probe(tmp_path: Path, tag: str) -> None:
    if "libx265" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx265 encoder to make an HEVC input")
    p = probe_video(_clip(tmp_path / f"{tag}.mp4", codec="libx265", tag=tag))
    assert (p.codec, p.codec_tag, p.frame_count) == ("hevc", tag, 30)


def test_probe_photos_counts_readable_images(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(pattern_frame(i, 64, 48)).save(tmp_path / f"{i}.jpg")
    (tmp_path / "notes.jpg").write_bytes(b"not an image")
    paths = sorted(tmp_path.iterdir())
    probe = probe_photos(paths)
    assert len(probe.images) == 3
    assert probe.rejected[0][0] == "notes.jpg"
    assert probe.images[0].width == 64
    with pytest.raises(JobFailed) as exc:
        probe_photos([*paths[:2], tmp_path / "notes.jpg"])
    assert _code(exc) == "too_few_images"
    assert exc.value.details["images"] == 2


def test_probe_photos_empty_list() -> None:
    with pytest.raises(JobFailed) as exc:
        probe_photos([])
    assert _code(exc) == "too_few_images"


def test_png_saved_as_mov_is_not_a_usable_video(tmp_path: Path) -> None:
    """A still image renamed .mov opens as a one-frame 'video': too short, not a crash."""
    src = FIXTURES / "actually_png.mov"
    dst = tmp_path / "x.mov"
    shutil.copy(src, dst)
    with pytest.raises(JobFailed) as exc:
        probe_video(dst)
    assert _code(exc) == "video_too_short"
    assert exc.value.details["frames"] == 1


@pytest.mark.parametrize("name", ["a.mkv", "a.mov", "a.ts", "a.h264"])
def test_other_containers_and_raw_streams(tmp_path: Path, name: str) -> None:
    """Matroska, QuickTime, MPEG-TS and a raw H.264 stream (no timestamps at all)."""
    p = probe_video(_clip(tmp_path / name, n=30, fps=10))
    assert (p.codec, p.frame_count) == ("h264", 30)
    assert p.duration_s == pytest.approx(3.0, abs=0.05)


def test_webm_vp9(tmp_path: Path) -> None:
    if "libvpx-vp9" not in av.codecs_available:
        pytest.skip("this PyAV build has no VP9 encoder to make a WebM input")
    p = probe_video(_clip(tmp_path / "a.webm", n=30, fps=10, codec="libvpx-vp9"))
    assert (p.container.split(",")[0], p.codec, p.frame_count) == ("matroska", "vp9", 30)
