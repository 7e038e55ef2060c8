"""Photos left out at ingest are named in warnings: real skull photos (CC BY 4.0) stored
under generated names, as the worker downloads them, plus broken files written here."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from arforge.photogrammetry.frames import prepare_photos
from arforge.shared.errors import JobFailed
from tests.conftest import SHARED_DATA

SKULL = SHARED_DATA / "skull" / "images"
ORBIT = [f"{i}.jpg" for i in range(53, 63)]  # 10 photos, 1200 x 800

pytestmark = pytest.mark.skipif(not SKULL.is_dir(), reason="shared real data not mounted")


def _downloaded(tmp_path: Path, sources: list[Path]) -> list[Path]:
    """Copies named 0000.jpg, 0001.jpg, ... as ``JobContext.fetch_inputs`` stores them."""
    dest = tmp_path / "inputs"
    dest.mkdir()
    out = []
    for i, src in enumerate(sources):
        out.append(dest / f"{i:04d}.jpg")
        shutil.copyfile(src, out[-1])
    return out


def _truncated(path: Path, size: int = 20_000) -> Path:
    """``path`` cut to its first ``size`` bytes: an upload that stopped early."""
    data = path.read_bytes()
    assert len(data) > size
    path.write_bytes(data[:size])
    return path


def test_a_truncated_photo_is_named_by_its_upload_name(tmp_path: Path) -> None:
    paths = _downloaded(tmp_path, [SKULL / n for n in [*ORBIT, "63.jpg"]])
    _truncated(paths[-1])
    names = [f"IMG_00{n}" for n in ORBIT] + ["IMG_0042.jpg"]
    report = prepare_photos(paths, tmp_path / "out", names=names, max_image_size=600)
    assert (report.inputs, report.kept) == (11, 10)
    assert report.warnings == [
        "photo IMG_0042.jpg could not be decoded (truncated or damaged) and was left out"
    ]
    assert report.rejected == [
        ("IMG_0042.jpg", "could not be decoded (truncated or damaged)"),
    ]
    assert report.sources == names[:10]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == report.files


def test_without_an_upload_name_the_input_number_is_used(tmp_path: Path) -> None:
    paths = _downloaded(tmp_path, [SKULL / n for n in ORBIT[:4]])
    _truncated(paths[1])
    report = prepare_photos(paths, tmp_path / "out", names=["a.jpg", None, "c.jpg", "d.jpg"])
    assert report.kept == 3
    assert report.warnings == [
        "photo input 2 could not be decoded (truncated or damaged) and was left out"
    ]


def test_many_dropped_photos_one_warning_per_reason(tmp_path: Path) -> None:
    """Seven truncated photos, one text file posing as a JPEG and one empty file: one
    sentence per reason, the first five names and the count of the rest."""
    paths = _downloaded(tmp_path, [SKULL / n for n in ORBIT])
    for p in paths[3:10]:
        _truncated(p, 5_000)
    text = tmp_path / "inputs" / "0010.jpg"
    text.write_text("these are my notes, not a photo\n")
    empty = tmp_path / "inputs" / "0011.jpg"
    empty.write_bytes(b"")
    names = [f"IMG_{i}.jpg" for i in range(10)] + ["notes.jpg", "empty.jpg"]
    report = prepare_photos([*paths, text, empty], tmp_path / "out", names=names)
    assert report.kept == 3
    assert report.warnings == [
        "7 photos could not be decoded (truncated or damaged) and were left out: "
        "IMG_3.jpg, IMG_4.jpg, IMG_5.jpg, IMG_6.jpg, IMG_7.jpg and 2 more",
        "file notes.jpg is not in an image format that can be read and was left out",
        "file empty.jpg is empty (0 bytes) and was left out",
    ]
    assert len(report.rejected) == 9


def test_a_damaged_zip_member_is_named_with_its_archive(tmp_path: Path) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for n in ORBIT[:3]:
            zf.write(SKULL / n, f"skull/{n}")
        zf.writestr("skull/99.jpg", (SKULL / ORBIT[3]).read_bytes()[:20_000])
    stored = _downloaded(tmp_path, [archive])  # stored as 0000.jpg, named photos.zip
    report = prepare_photos(stored, tmp_path / "out", names=["photos.zip"])
    assert report.kept == 3
    assert report.warnings == [
        "photo skull/99.jpg in photos.zip could not be decoded (truncated or damaged) "
        "and was left out"
    ]


def test_too_few_left_fails_and_says_which_were_left_out(tmp_path: Path) -> None:
    paths = _downloaded(tmp_path, [SKULL / n for n in ORBIT[:4]])
    for p in paths[1:3]:
        _truncated(p)
    with pytest.raises(JobFailed) as exc:
        prepare_photos(paths, tmp_path / "out", names=["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    assert exc.value.code == "too_few_images"
    assert exc.value.message == (
        "2 usable photo(s) were given; at least 3 are needed for a reconstruction. "
        "2 photos could not be decoded (truncated or damaged) and were left out: "
        "b.jpg and c.jpg."
    )
    assert exc.value.details == {"images": 2, "rejected": 2, "min_images": 3}
