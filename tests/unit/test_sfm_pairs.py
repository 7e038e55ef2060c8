"""SfM helpers that need no reconstruction: pair selection, device choice, abort mapping."""

from __future__ import annotations

from pathlib import Path

import pycolmap
import pytest
from PIL import Image

from arforge.photogrammetry import capabilities
from arforge.photogrammetry.sfm import camera_groups, classify_native_abort, list_images
from arforge.photogrammetry.sfm_pairs import (
    chunked,
    exhaustive_pairs,
    sequential_pairs,
    write_pairs_file,
)
from arforge.shared.errors import JobFailed


def test_exhaustive_pairs_are_all_unordered_pairs() -> None:
    pairs = exhaustive_pairs(7)
    assert len(pairs) == 21
    assert len(set(pairs)) == 21
    assert all(i < j for i, j in pairs)
    assert exhaustive_pairs(1) == []


def test_sequential_pairs_window_jumps_and_loop_closure() -> None:
    pairs = set(sequential_pairs(30, overlap=5, loop_closure=True))
    assert all(i < j for i, j in pairs)
    # the window
    assert {(10, 11), (10, 15)} <= pairs
    assert (10, 16) not in pairs
    # 2^k jumps beyond the window (8 and 16 frames ahead)
    assert {(10, 18), (10, 26)} <= pairs
    assert (10, 19) not in pairs
    # the last frames wrap around to the first ones (a walk-around closes its loop)
    assert {(0, 29), (0, 25), (4, 29)} <= pairs
    assert (5, 29) not in pairs

    open_loop = set(sequential_pairs(30, overlap=5, loop_closure=False))
    assert (0, 29) not in open_loop
    assert pairs - open_loop == {(i, j) for j in range(25, 30) for i in range(0, 5) if j - i >= 25}


def test_sequential_pairs_short_sequence_does_not_wrap() -> None:
    # with no more frames than two windows the wrap would only repeat pairs of the window
    assert sequential_pairs(6, overlap=5) == exhaustive_pairs(6)
    assert sequential_pairs(1) == []


def test_chunked_covers_every_pair_once(tmp_path: Path) -> None:
    pairs = exhaustive_pairs(12)
    chunks = list(chunked(pairs, 5))
    assert len(chunks) == 5
    assert [p for c in chunks for p in c] == pairs
    names = [f"f{i}.jpg" for i in range(12)]
    text = write_pairs_file(tmp_path / "p.txt", names, chunks[0]).read_text()
    assert text.splitlines()[0] == "f0.jpg f1.jpg"
    assert len(text.splitlines()) == len(chunks[0])


def test_device_choice_follows_the_capability_check() -> None:
    caps = capabilities.detect()
    assert caps.cuda is bool(pycolmap.has_cuda)
    assert capabilities.choose_device("cpu", caps) == pycolmap.Device.cpu
    expected_auto = pycolmap.Device.cuda if caps.cuda else pycolmap.Device.cpu
    assert capabilities.choose_device("auto", caps) == expected_auto
    no_cuda = capabilities.Capabilities("x", "x", cuda=False, cpu_count=2)
    with pytest.raises(JobFailed) as err:
        capabilities.choose_device("cuda", no_cuda)
    assert err.value.code == "gpu_unavailable"
    assert "without CUDA" in err.value.message
    assert capabilities.choose_device("auto", no_cuda) == pycolmap.Device.cpu
    with pytest.raises(ValueError):
        capabilities.choose_device("opengl", caps)  # type: ignore[arg-type]


def test_known_colmap_aborts_become_failure_codes() -> None:
    tail = (
        "F20261129 18:53:24.676710 1398 incremental_mapper.cc:1251] "
        "Check failed: reconstruction_->NumRegImages() >= 2 (1 vs. 2)\n"
        "*** Check failure stack trace: ***"
    )
    failure = classify_native_abort(tail)
    assert failure is not None
    assert failure.code == "sfm_insufficient_registration"
    assert classify_native_abort("Segmentation fault in libfoo") is None


def _photo(path: Path, size: tuple[int, int], model: str | None) -> None:
    im = Image.new("RGB", size, (120, 80, 40))
    exif = Image.Exif()
    if model:
        exif[271] = "Maker"
        exif[272] = model
    im.save(path, exif=exif.tobytes())


def test_camera_groups_split_by_size_and_exif_camera(tmp_path: Path) -> None:
    _photo(tmp_path / "a_1.jpg", (64, 48), "PhoneA")
    _photo(tmp_path / "a_2.jpg", (64, 48), "PhoneA")
    _photo(tmp_path / "b_10.jpg", (64, 48), "PhoneB")
    _photo(tmp_path / "b_9.jpg", (48, 64), None)
    (tmp_path / "notes.txt").write_text("not an image")
    names = list_images(tmp_path)
    assert names == ["a_1.jpg", "a_2.jpg", "b_9.jpg", "b_10.jpg"]
    groups = camera_groups(tmp_path, names)
    assert sorted(groups) == [["a_1.jpg", "a_2.jpg"], ["b_10.jpg"], ["b_9.jpg"]]


def test_run_sfm_rejects_empty_input_spaced_names_and_missing_cuda(tmp_path: Path) -> None:
    from arforge.photogrammetry.sfm import run_sfm

    (tmp_path / "empty").mkdir()
    with pytest.raises(JobFailed) as err:
        run_sfm(tmp_path / "empty", tmp_path / "work")
    assert err.value.code == "too_few_images"
    assert err.value.details["total_images"] == 0

    spaced = tmp_path / "spaced"
    spaced.mkdir()
    for name in ("a 1.jpg", "a2.jpg", "a3.jpg"):
        _photo(spaced / name, (64, 48), None)
    with pytest.raises(ValueError, match="whitespace"):
        run_sfm(spaced, tmp_path / "work")

    if not pycolmap.has_cuda:  # S-08: a GPU-only request is refused before any work
        with pytest.raises(JobFailed) as err:
            run_sfm(spaced, tmp_path / "work2", device="cuda")
        assert err.value.code == "gpu_unavailable"
        assert not (tmp_path / "work2").exists()
