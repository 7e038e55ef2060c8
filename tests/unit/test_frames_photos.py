"""Photo inputs: EXIF orientation, HEIC, zips, downscale and naming."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from ingest_media import pattern_frame, red_corner
from PIL import Image

from arforge.photogrammetry.frames import prepare_photos
from arforge.photogrammetry.images import HEIF_SUPPORTED, read_photo_info
from arforge.shared.errors import JobFailed

UPRIGHT = pattern_frame(0, 120, 80)  # landscape, red marker top-left
# EXIF orientation -> how the camera stored the upright picture (np.rot90 turns, CCW)
STORED_TURNS = {1: 0, 3: 2, 6: 1, 8: -1}


def _grey_diff(img: np.ndarray, ref: np.ndarray) -> float:
    """Mean absolute luma difference (JPEG keeps luma far better than chroma)."""
    a = np.asarray(Image.fromarray(img).convert("L"), dtype=np.int16)
    b = np.asarray(Image.fromarray(ref).convert("L"), dtype=np.int16)
    return float(np.abs(a - b).mean())


def _photo(path: Path, orientation: int, fmt: str = "JPEG") -> Path:
    stored = np.ascontiguousarray(np.rot90(UPRIGHT, STORED_TURNS[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x0110] = "TestCam"
    exif.get_ifd(0x8769)[0x920A] = 4.25  # FocalLength, mm
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    Image.fromarray(stored).save(path, fmt, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("orientation", [6, 8, 3, 1])
def test_exif_orientation_comes_out_upright(tmp_path: Path, orientation: int) -> None:
    src = [_photo(tmp_path / f"p{i}.jpg", orientation) for i in range(3)]
    info = read_photo_info(src[0])
    assert info.orientation == orientation
    assert (info.display_width, info.display_height) == (120, 80)
    report = prepare_photos(src, tmp_path / "out", max_image_size=1000)
    assert report.rotated == (0 if orientation == 1 else 3)
    for name in report.files:
        out = tmp_path / "out" / name
        img = np.asarray(Image.open(out).convert("RGB"))
        assert img.shape[:2] == (80, 120)
        assert red_corner(img) == "tl"
        assert _grey_diff(img, UPRIGHT) < 6 < _grey_diff(img, UPRIGHT[::-1, ::-1])
        kept = read_photo_info(out)
        assert kept.orientation == 1  # reset: nothing downstream rotates again
        assert kept.focal_length_mm == pytest.approx(4.25)  # SfM intrinsics prior kept
        assert kept.focal_length_35mm == pytest.approx(26)


@pytest.mark.skipif(not HEIF_SUPPORTED, reason="pillow-heif is not installed")
@pytest.mark.parametrize("orientation", [6, 8])
def test_heic_photos_are_read_upright(tmp_path: Path, orientation: int) -> None:
    src = [_photo(tmp_path / f"p{i}.heic", orientation, "HEIF") for i in range(3)]
    report = prepare_photos(src, tmp_path / "out")
    img = np.asarray(Image.open(tmp_path / "out" / report.files[0]).convert("RGB"))
    assert img.shape[:2] == (80, 120) and red_corner(img) == "tl"


def test_zip_with_folders_and_junk(tmp_path: Path) -> None:
    """Natural order, hidden / __MACOSX / non-photo members skipped, no path escapes."""
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in (10, 2, 1):
            p = _photo(tmp_path / f"tmp{i}.jpg", 6)
            zf.write(p, f"capture/IMG_{i}.jpg")
        zf.writestr("__MACOSX/capture/._IMG_1.jpg", b"resource fork")
        zf.writestr("capture/.DS_Store", b"junk")
        zf.writestr("capture/readme.txt", b"hello")
        zf.write(tmp_path / "tmp1.jpg", "../../escape.jpg")
    report = prepare_photos(archive, tmp_path / "out", max_image_size=60)
    assert report.kept == 4
    assert report.files == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    assert all(size == (60, 40) for size in report.sizes)
    assert not (tmp_path.parent / "escape.jpg").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == report.files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".photos-")]  # cleaned


def test_zip_member_order_is_natural(tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in (10, 2, 1):
            img = pattern_frame(i, 64, 48)
            path = tmp_path / f"{i}.png"
            Image.fromarray(img).save(path)
            zf.write(path, f"IMG_{i}.png")
    out = tmp_path / "out"
    report = prepare_photos(archive, out)
    firsts = [np.asarray(Image.open(out / n).convert("RGB")) for n in report.files]
    for got, i in zip(firsts, (1, 2, 10), strict=True):
        assert _grey_diff(got, pattern_frame(i, 64, 48)) < 6


def test_unreadable_photos_are_skipped_then_too_few_fails(tmp_path: Path) -> None:
    good = [_photo(tmp_path / f"p{i}.jpg", 1) for i in range(2)]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(JobFailed) as exc:
        prepare_photos([*good, bad], tmp_path / "out")
    assert exc.value.code == "too_few_images"
    assert exc.value.details == {"images": 2, "rejected": 1, "min_images": 3}
    assert not list((tmp_path / "out").glob("*.jpg"))


def test_rgba_and_16_bit_photos_become_rgb(tmp_path: Path) -> None:
    rgba = np.dstack([UPRIGHT, np.full(UPRIGHT.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    grey16 = (UPRIGHT[..., 1].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "b.png")
    _photo(tmp_path / "c.jpg", 1)
    report = prepare_photos(sorted(tmp_path.glob("*.*")), tmp_path / "out")
    assert report.kept == 3
    for name in report.files:
        im = Image.open(tmp_path / "out" / name)
        assert im.mode == "RGB" and im.size == (120, 80)
    grey = np.asarray(Image.open(tmp_path / "out" / report.files[1]).convert("L"))
    assert np.abs(grey.astype(np.int16) - UPRIGHT[..., 1]).mean() < 8


def test_corrupt_zip_is_reported(tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.write(_photo(tmp_path / f"{i}.jpg", 1), f"{i}.jpg")
    data = archive.read_bytes()
    archive.write_bytes(data[:40] + b"\x00" * 40 + data[80:])  # damaged member
    with pytest.raises(JobFailed) as exc:
        prepare_photos(archive, tmp_path / "out")
    assert exc.value.code == "corrupt_archive"
    archive.write_bytes(data[: len(data) // 2])  # upload cut short: no central directory
    with pytest.raises(JobFailed) as exc:
        prepare_photos(archive, tmp_path / "out")
    assert exc.value.code == "corrupt_archive"
    assert "upload incomplete?" in exc.value.message
