"""Videos damaged part-way through: decoding errors mid-stream are reported, never silent.

Built from the bundled skull walk-around (30 frames, 3 fps, H.264 with B-frames): bytes
after an offset, or a short range, are overwritten with seeded random data, so the
container (sample table) stays intact and only the frame data is garbage. Where the
damage lies is read from the pristine file's packet table, not hard-coded.
"""

from __future__ import annotations

import random
from pathlib import Path

import av
import pytest

from arforge.photogrammetry.frames import extract_keyframes
from arforge.photogrammetry.pipeline import run_pipeline
from arforge.shared.errors import JobFailed

REPO = Path(__file__).resolve().parents[2]
SKULL = REPO / "samples" / "skull" / "skull-walkaround.mp4"


def _damage(dst: Path, start: int, end: int | None = None, seed: int = 7) -> Path:
    """Copy SKULL to ``dst`` with bytes [start, end) replaced by seeded random bytes."""
    data = bytearray(SKULL.read_bytes())
    end = len(data) if end is None else end
    data[start:end] = random.Random(seed).randbytes(end - start)
    dst.write_bytes(bytes(data))
    return dst


def _first_hit_frame(start: int) -> tuple[int, float]:
    """(0-based display index, time in s) of the first frame whose packet holds byte ``start``
    or a later one, from the pristine file's packet table."""
    with av.open(str(SKULL)) as c:
        s = c.streams.video[0]
        tb = float(s.time_base or 0)
        packets = [(p.pts, p.pos, p.size) for p in c.demux(s) if p.size]
    pts = sorted(p for p, _, _ in packets)
    hit = min(p for p, pos, size in packets if pos + size > start)
    return pts.index(hit), (hit - pts[0]) * tb


def test_tail_damage_is_reported_with_where_decoding_stopped(tmp_path: Path) -> None:
    start = 3_000_000
    video = _damage(tmp_path / "tail.mp4", start)
    hit_index, hit_s = _first_hit_frame(start)
    report = extract_keyframes(video, tmp_path / "kf", max_image_size=400)

    assert report.damaged and not report.truncated
    assert report.decode_errors > 0
    assert report.expected_frames == 30
    # every frame before the first unreadable one decoded, none after it
    first_bad = report.damaged_at_frame
    assert first_bad is not None and first_bad <= hit_index + 1
    assert report.decoded == first_bad - 1 == report.kept
    assert report.missing_frames == 30 - report.decoded
    assert report.damaged_at_s == pytest.approx((first_bad - 1) / 3, abs=1e-3)
    assert max(report.timestamps_s) < hit_s
    assert len(list((tmp_path / "kf").glob("*.jpg"))) == report.kept

    assert len(report.warnings) == 1
    text = report.warnings[0]
    assert "damaged" in text
    assert f"frame {first_bad} of 30" in text
    assert f"{report.damaged_at_s:.2f} s of 10.00 s" in text
    assert f"{report.decoded} frames" in text
    assert report.to_dict()["warnings"] == report.warnings


def test_damage_in_the_middle_skips_the_bad_frames_and_says_how_many(tmp_path: Path) -> None:
    start, end = 1_550_000, 1_560_000
    video = _damage(tmp_path / "mid.mp4", start, end)
    hit_index, _ = _first_hit_frame(start)
    report = extract_keyframes(video, tmp_path / "kf", max_image_size=400)

    assert report.damaged
    assert report.damaged_at_frame is not None and report.damaged_at_frame <= hit_index + 1
    lost = report.missing_frames + report.corrupt_frames
    assert 1 <= lost <= 5
    assert report.decoded == 30 - lost == report.kept
    # decoding went on after the damage: the last frame (9.67 s) is there
    assert max(report.timestamps_s) == pytest.approx(29 / 3, abs=1e-3)
    assert len(report.warnings) == 1
    assert f"{lost} of 30 frames" in report.warnings[0]
    assert f"frame {report.damaged_at_frame} of 30" in report.warnings[0]


def test_too_few_frames_left_by_damage_fails_corrupt_container(tmp_path: Path) -> None:
    """The fresh-user repro: bytes after 1,000,000 random; a handful of frames decode."""
    start = 1_000_000
    video = _damage(tmp_path / "early.mp4", start)
    hit_index, _ = _first_hit_frame(start)
    with pytest.raises(JobFailed) as exc:
        extract_keyframes(video, tmp_path / "kf", max_image_size=400)
    failure = exc.value
    assert failure.code == "corrupt_container"
    d = failure.details
    assert d["reason"] == "damaged"
    assert d["expected_frames"] == 30 and d["min_frames"] == 8
    assert 1 <= d["decoded"] < 8 and d["decoded"] <= hit_index
    assert d["damaged_at_frame"] == d["decoded"] + 1
    assert f"frame {d['damaged_at_frame']} of 30" in failure.message
    assert "damaged" in failure.message
    assert not list((tmp_path / "kf").glob("*.jpg"))  # nothing left behind


def test_pipeline_fails_before_sfm_on_a_video_damaged_early(tmp_path: Path) -> None:
    video = _damage(tmp_path / "early.mp4", 1_000_000)
    with pytest.raises(JobFailed) as exc:
        run_pipeline([(str(video), "video")], str(tmp_path / "work"), {"quality": "draft"})
    assert exc.value.code == "corrupt_container"
    assert not (tmp_path / "work" / "sfm").exists()


def test_intact_video_reports_no_damage(tmp_path: Path) -> None:
    report = extract_keyframes(SKULL, tmp_path / "kf", max_image_size=400)
    assert not report.damaged and not report.truncated
    assert (report.decode_errors, report.corrupt_frames, report.missing_frames) == (0, 0, 0)
    assert report.damaged_at_frame is None and report.damaged_at_s is None
    assert report.expected_frames == report.decoded == 30
    assert report.warnings == []


def test_truncated_video_warning_counts_listed_frames(tmp_path: Path) -> None:
    """The skull file is faststart: cut at 2 MB, its sample table still lists 30 frames."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(SKULL.read_bytes()[:2_000_000])
    report = extract_keyframes(cut, tmp_path / "kf", max_image_size=400)
    assert report.truncated
    assert report.expected_frames == 30
    assert len(report.warnings) == 1
    assert "truncated" in report.warnings[0]
    assert f"only {report.decoded} of 30 frames" in report.warnings[0]
