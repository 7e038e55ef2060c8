"""Keyframe extraction on generated and real videos (CASES V-01, V-02, V-04, V-07, V-10)."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from ingest_media import blur, encode, pattern_frame, red_corner, texture
from PIL import Image

from arforge.photogrammetry.frames import extract_keyframes
from arforge.photogrammetry.tonemap import pq_inverse_eotf
from arforge.shared.errors import JobFailed

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
FOX = SHARED_DATA / "fox" / "fox-walkaround.mp4"
SKULL = SHARED_DATA / "skull" / "skull-walkaround.mp4"


def _jpegs(d: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(d.glob("*.jpg"))]


@pytest.mark.parametrize("rotation", [0, 90, 180, 270, -90])
def test_rotation_tags_give_upright_frames(tmp_path: Path, rotation: int) -> None:
    """V-01: upright frame U is stored turned by -rotation with a display rotation tag;
    every extracted frame is U again (red marker top-left, size swapped for +-90)."""
    uw, uh = (96, 160) if rotation % 180 else (160, 96)  # upright (portrait for +-90)
    tex = texture(uw, uh)
    k = (rotation // 90) % 4

    def stored(i: int) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(pattern_frame(i, uw, uh, tex), -k))

    path = encode(tmp_path / "r.mp4", stored, n=25, rotation=rotation)
    report = extract_keyframes(path, tmp_path / "kf", max_frames=10, max_image_size=1000)
    frames = _jpegs(tmp_path / "kf")
    assert report.kept == len(frames) == 10
    assert (report.width, report.height) == (uw, uh)
    for idx, img in zip(report.frame_indices, frames, strict=True):
        assert img.shape[:2] == (uh, uw)
        assert red_corner(img) == "tl"
        expected = pattern_frame(idx, uw, uh, tex).astype(np.int16)
        assert np.abs(img.astype(np.int16) - expected).mean() < 12


def test_sharp_frames_are_picked_over_blurred_spans(tmp_path: Path) -> None:
    """V-10: alternate seconds blurred (sigma 4 px); >= 90% of picks from sharp seconds."""
    w, h, fps = 320, 240, 10
    tex = texture(w, h)

    def frame(i: int) -> np.ndarray:
        img = pattern_frame(i, w, h, tex)
        return blur(img) if (i // fps) % 2 else img

    path = encode(tmp_path / "b.mp4", frame, n=60, fps=fps)
    report = extract_keyframes(path, tmp_path / "kf", max_frames=20)
    sharp = [i for i in report.frame_indices if (i // fps) % 2 == 0]
    assert report.kept >= 9
    assert len(sharp) / report.kept >= 0.9
    assert report.rejected_blurry >= 8
    assert report.decoded == 60


def test_within_window_the_sharpest_frame_wins(tmp_path: Path) -> None:
    """Pattern of the fox capture: one sharp frame among three blurred, 4-frame windows."""
    w, h = 200, 150
    tex = texture(w, h)
    path = encode(
        tmp_path / "w.mp4",
        lambda i: (
            pattern_frame(i // 4, w, h, tex)
            if i % 4 == 1
            else blur(pattern_frame(i // 4, w, h, tex), 2.5)
        ),
        n=80,
        fps=20,
    )
    report = extract_keyframes(path, tmp_path / "kf", max_frames=20)
    assert report.mode == "windows" and report.windows == 20
    assert [i % 4 for i in report.frame_indices] == [1] * 20


def test_variable_frame_rate_picks_spread_without_duplicates(tmp_path: Path) -> None:
    """V-04: 60 fps for 2 s then every 4th frame for 2 s; 40 picks spread over 4 s."""
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
    report = extract_keyframes(path, tmp_path / "kf", max_frames=40)
    ts = report.timestamps_s
    assert report.kept == 40 and report.decoded == 150
    assert len(set(ts)) == len(ts) and ts == sorted(ts)
    assert len(set(report.frame_indices)) == 40
    first_half = sum(t < 2.0 for t in ts)
    assert first_half == 20  # windows are equal in time, not in frame count
    assert max(np.diff(ts)) <= 0.2 + 1e-6  # no gap wider than two windows
    frames = _jpegs(tmp_path / "kf")
    for a, b in itertools.pairwise(frames):
        assert np.abs(a.astype(np.int16) - b).mean() > 5  # no repeated image


def test_raw_h264_without_timestamps_is_windowed(tmp_path: Path) -> None:
    """A raw .h264 stream carries no timestamps: frames are counted on, not lumped."""
    tex = texture(160, 120)
    path = encode(tmp_path / "a.h264", lambda i: pattern_frame(i, 160, 120, tex), n=30)
    report = extract_keyframes(path, tmp_path / "kf", max_frames=10)
    assert report.kept == 10 and report.decoded == 30
    assert report.timestamps_s == sorted(set(report.timestamps_s))


def test_repeated_frames_are_not_kept_twice(tmp_path: Path) -> None:
    """A constant-rate file padded with repeated frames (each image twice)."""
    tex = texture(160, 120)
    path = encode(tmp_path / "dup.mp4", lambda i: pattern_frame(i // 2, 160, 120, tex), n=40)
    report = extract_keyframes(path, tmp_path / "kf", max_frames=100)
    assert report.mode == "every_frame"
    assert report.duplicates == 20
    assert report.kept == 20


def test_all_blurred_clip_fails_blurry_input(tmp_path: Path) -> None:
    tex = texture(320, 240)
    path = encode(tmp_path / "blur.mp4", lambda i: blur(pattern_frame(i, 320, 240, tex), 8.0), n=30)
    with pytest.raises(JobFailed) as exc:
        extract_keyframes(path, tmp_path / "kf", max_frames=10)
    assert exc.value.code == "blurry_input"
    assert not list((tmp_path / "kf").glob("*.jpg"))  # nothing half-written left


def test_downscale_to_max_image_size_and_naming(tmp_path: Path) -> None:
    tex = texture(320, 240)
    path = encode(tmp_path / "s.mp4", lambda i: pattern_frame(i, 320, 240, tex), n=30)
    progress: list[float] = []
    report = extract_keyframes(
        path,
        tmp_path / "kf",
        max_frames=12,
        max_image_size=200,
        on_progress=lambda f, stage: progress.append(f),
    )
    assert report.files == [f"{i:06d}.jpg" for i in range(1, 13)]
    assert sorted(p.name for p in (tmp_path / "kf").iterdir()) == report.files
    assert (report.output_width, report.output_height) == (200, 150)
    assert Image.open(tmp_path / "kf" / "000001.jpg").size == (200, 150)
    assert progress[-1] == 1.0 and progress == sorted(progress)


def test_truncated_faststart_video_decodes_up_to_the_break(tmp_path: Path) -> None:
    tex = texture(160, 120)
    path = encode(
        tmp_path / "f.mp4",
        lambda i: pattern_frame(i, 160, 120, tex),
        n=60,
        container_options={"movflags": "faststart"},
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    report = extract_keyframes(cut, tmp_path / "kf", max_frames=100)
    assert report.truncated
    assert 10 <= report.kept < 60


@pytest.mark.parametrize("tag", ["hvc1", "hev1"])
def test_hevc_all_frames_decoded(tmp_path: Path, tag: str) -> None:
    """V-02: iPhone-style HEVC tagged hvc1 / hev1."""
    if "libx265" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx265 encoder to make an HEVC input")
    tex = texture(96, 160)
    path = encode(
        tmp_path / f"{tag}.mp4",
        lambda i: np.ascontiguousarray(np.rot90(pattern_frame(i, 96, 160, tex), 1)),
        n=30,
        codec="libx265",
        tag=tag,
        rotation=-90,
    )
    report = extract_keyframes(path, tmp_path / "kf", max_frames=100)
    assert report.decoded == 30 and report.kept == 30
    img = _jpegs(tmp_path / "kf")[0]
    assert img.shape[:2] == (160, 96) and red_corner(img) == "tl"


def _pq_clip(path: Path) -> Path:
    """10-bit HEVC, PQ transfer, BT.2020: left half 100 cd/m^2 grey, right half 1000,
    over a faint texture (so blur detection has something to measure)."""
    w, h = 192, 128
    tex = texture(w, h).astype(np.float64) / 255.0
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx265", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p10le"
        s.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
        cc = s.codec_context
        cc.color_trc, cc.color_primaries, cc.colorspace, cc.color_range = 16, 9, 9, 1
        for i in range(25):
            nits = np.empty((h, w))
            nits[:, : w // 2], nits[:, w // 2 :] = 100.0, 1000.0
            shift = (i * 8) % 400
            nits *= 0.9 + 0.2 * tex[:, shift : shift + w, 0]
            sig = np.repeat(pq_inverse_eotf(nits)[..., None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray((sig * 65535).astype(np.uint16), format="rgb48le")
            frame = frame.reformat(
                format="yuv420p10le", dst_colorspace="bt2020", dst_color_range="MPEG"
            )
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_hdr_pq_is_tone_mapped(tmp_path: Path) -> None:
    if "libx265" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx265 encoder to make a 10-bit HDR input")
    report = extract_keyframes(_pq_clip(tmp_path / "pq.mp4"), tmp_path / "kf", max_frames=5)
    assert report.hdr == "pq"
    img = _jpegs(tmp_path / "kf")[0].astype(np.float64)
    left, right = img[:, 10:80].mean(), img[:, 112:182].mean()
    # 100 cd/m^2 is 0.49 of SDR reference white (203): sRGB ~186; a naive decode of the
    # PQ code values would give ~129. 1000 cd/m^2 lands near white, not clipped flat.
    assert 170 < left < 200
    assert right > 235


def test_hdr_can_be_refused(tmp_path: Path) -> None:
    if "libx265" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx265 encoder to make a 10-bit HDR input")
    with pytest.raises(JobFailed) as exc:
        extract_keyframes(_pq_clip(tmp_path / "pq.mp4"), tmp_path / "kf", hdr="reject")
    assert exc.value.code == "hdr_unsupported"


def test_fox_video_picks_sharp_upright_frames(tmp_path: Path) -> None:
    """Real capture: 200 frames, frame 4k+1 sharp, stored 1920x1080 with -90 rotation."""
    report = extract_keyframes(FOX, tmp_path / "kf", max_frames=50, max_image_size=1920)
    assert report.kept == 50 and report.decoded == 200
    sharp = sum(i % 4 == 1 for i in report.frame_indices)
    assert sharp / report.kept >= 0.9
    assert (report.width, report.height) == (1080, 1920)
    assert (report.output_width, report.output_height) == (1080, 1920)
    # the video was made from fox/images: the first sharp pick is photo 0 upright
    pick = np.asarray(Image.open(tmp_path / "kf" / "000001.jpg").convert("L").resize((135, 240)))
    photo_path = sorted((SHARED_DATA / "fox" / "images").glob("*.jpg"))[0]
    photo = np.asarray(Image.open(photo_path).convert("L").resize((135, 240)))
    diff = np.abs(pick.astype(np.int16) - photo).mean()
    flipped = np.abs(pick.astype(np.int16) - photo[::-1, ::-1]).mean()
    assert diff < 6 and diff < flipped / 3


def test_skull_video_keeps_every_frame(tmp_path: Path) -> None:
    """30 frames at 3 fps, one photo each: no view may be dropped."""
    report = extract_keyframes(SKULL, tmp_path / "kf", max_frames=150, max_image_size=1200)
    assert report.mode == "every_frame"
    assert report.kept == 30 and report.rejected_blurry == 0 and report.duplicates == 0
    assert report.frame_indices == list(range(30))
    assert (report.output_width, report.output_height) == (1200, 800)
    assert report.timestamps_s[:3] == pytest.approx([0.0, 1 / 3, 2 / 3], abs=1e-3)
