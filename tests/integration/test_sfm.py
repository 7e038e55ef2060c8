"""Structure from motion with real pycolmap on real photos (skull: CC BY 4.0, fox: tests only).

Inputs are small (14 photos at 1000 px, a few generated variants) to keep the suite fast on
two cores. Inputs that can abort the process natively (cases S-01, S-06) run in a child
process group through ``arforge.shared.isolation.run_isolated``, as the worker runs them:
the test process must survive and read a clear failure code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
import pytest
from PIL import Image

from arforge.photogrammetry.sfm import classify_native_abort, run_sfm
from arforge.shared.errors import ChildCrashed, JobFailed
from arforge.shared.isolation import run_isolated
from tests.conftest import SHARED_DATA

SKULL = SHARED_DATA / "skull" / "images"
FOX = SHARED_DATA / "fox" / "images"
UPPER_ORBIT = [f"{i}.jpg" for i in range(53, 67)]  # 14 photos, one orbit of the skull

pytestmark = pytest.mark.skipif(not SKULL.is_dir(), reason="shared real data not mounted")


def _link(dst: Path, files: list[Path], names: list[str] | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        (dst / (names[i] if names else f.name)).symlink_to(f)
    return dst


# --- a full registration ------------------------------------------------------------------
@pytest.fixture(scope="module")
def skull_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[tuple[float, str]]]:
    root = tmp_path_factory.mktemp("skull")
    images = _link(root / "images", [SKULL / n for n in UPPER_ORBIT])
    events: list[tuple[float, str]] = []
    result = run_sfm(
        images,
        root / "work",
        matcher="auto",
        max_image_size=1000,
        on_progress=lambda f, s: events.append((f, s)),
    )
    return result, events


def test_skull_orbit_registers_every_photo(skull_run: tuple[Any, Any]) -> None:
    result, _ = skull_run
    assert result.total_images == 14
    assert result.registered_images == 14
    assert result.models == [14]
    assert result.unregistered_names == []
    assert result.registered_names == UPPER_ORBIT
    assert 0.05 < result.mean_reprojection_error_px < 1.0
    assert result.points3d > 300
    assert result.mean_track_length > 2.5
    assert result.matcher == "exhaustive"  # unordered photos, fewer than 100
    assert result.camera_groups == result.cameras == 1  # one camera: intrinsics shared
    assert result.device == "cpu" or pycolmap.has_cuda
    assert result.warnings == []


def test_skull_model_on_disk_matches_the_report(skull_run: tuple[Any, Any]) -> None:
    result, _ = skull_run
    model = pycolmap.Reconstruction(str(result.model_dir))
    assert model.num_reg_images() == result.registered_images
    assert model.num_points3D() == result.points3d
    camera = next(iter(model.cameras.values()))
    assert (camera.width, camera.height) == (1200, 800)
    # focal length of this narrow lens: well above the 1.2 x width prior COLMAP starts from
    assert 1.0 * 1200 < camera.focal_length < 6.0 * 1200
    # cameras orbit the object: centres spread around a ring, and the middle of the point
    # cloud is in front of every camera and inside every image
    centres = np.array([im.projection_center() for im in model.images.values()])
    spread = np.linalg.norm(centres - centres.mean(0), axis=1)
    assert spread.min() > 0.3 * spread.max()
    middle = np.median(np.array([p.xyz for p in model.points3D.values()]), axis=0)
    for image in model.images.values():
        assert (image.cam_from_world() * middle)[2] > 0
        u, v = image.project_point(middle)
        assert 0 <= u < camera.width and 0 <= v < camera.height, image.name

    report = json.loads(result.report_path.read_text())
    assert report["status"] == "ok"
    assert report["registered_images"] == 14
    assert report["points3d"] == result.points3d
    assert report["registered_ratio"] == 1.0
    assert set(report["timings_s"]) >= {"features", "matching", "mapping", "total"}
    assert all(v >= 0 for v in report["timings_s"].values())
    assert report["timings_s"]["total"] >= report["timings_s"]["features"]
    assert report["match_graph"]["general_ratio"] > 0.5
    assert report["peak_rss_mb"] > 50


def test_skull_progress_is_monotonic_and_ends_at_one(skull_run: tuple[Any, Any]) -> None:
    _, events = skull_run
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert 0.0 <= fractions[0] < 0.1
    assert [s for s in dict.fromkeys(s for _, s in events)] == [
        "features",
        "matching",
        "mapping",
        "done",
    ]


def test_global_mapper_registers_the_orbit_too(tmp_path: Path) -> None:
    images = _link(tmp_path / "images", [SKULL / n for n in UPPER_ORBIT])
    result = run_sfm(images, tmp_path / "work", mapper="global", max_image_size=800)
    assert result.registered_images == 14
    assert result.mean_reprojection_error_px < 1.0
    assert result.points3d > 200
    assert pycolmap.Reconstruction(str(result.model_dir)).num_reg_images() == 14


def test_a_blank_photo_is_named_by_its_label(tmp_path: Path) -> None:
    """A flat grey photo has no features: left out, with one warning using its label."""
    images = _link(tmp_path / "images", [SKULL / n for n in UPPER_ORBIT])
    Image.new("RGB", (1200, 800), (128, 128, 128)).save(images / "000015.jpg", quality=95)
    result = run_sfm(
        images,
        tmp_path / "work",
        max_image_size=800,
        labels={"000015.jpg": "IMG_0042.jpg", "53.jpg": "IMG_0001.jpg"},
    )
    assert result.registered_images == 14
    assert result.unregistered_names == ["000015.jpg"]
    assert result.warnings == [
        "image IMG_0042.jpg could not be read or shows no detail to match (blank, blurred "
        "or dark) and was left out"
    ]


# --- S-03: two unrelated captures in one job ----------------------------------------------
@pytest.mark.skipif(not FOX.is_dir(), reason="fox data not mounted")
async def test_two_captures_keep_the_largest_model_and_warn(tmp_path: Path) -> None:
    skull = [SKULL / n for n in UPPER_ORBIT[:10]]
    fox = sorted(FOX.glob("*.jpg"))[:5]  # five consecutive frames of the phone video
    images = _link(
        tmp_path / "images",
        skull + fox,
        [f"s_{p.name}" for p in skull] + [f"x_{p.name}" for p in fox],
    )
    stages: list[str] = []
    result = await run_isolated(  # in a child, as the worker runs it
        run_sfm,
        images,
        tmp_path / "work",
        max_image_size=800,
        on_progress=lambda _f, s: stages.append(s),
    )
    assert stages[-1] == "done"
    assert result.total_images == 15
    # The kept model is the skull's: all of its 10 images, or 9 in the runs where the
    # multithreaded incremental mapper leaves one out (about one run in five here).
    kept = result.registered_images
    assert kept in (9, 10)
    assert set(result.registered_names) <= {f"s_{p.name}" for p in skull}
    assert result.models[0] == kept
    assert result.camera_groups == 2  # two camera groups (1200x800 and 1080x1920)
    # The five fox frames either form a model of their own or, more often at 800 px, are
    # placed in none (COLMAP may also keep a smaller model re-registering skull photos
    # already in the kept one: ``models`` lists it, the warning does not count it).
    assert len(result.warnings) == 1, result.warnings
    others, unplaced, n_unplaced = _left_out_in_warning(result.warnings[0], kept, 15)
    assert set(unplaced) <= set(result.unregistered_names)
    assert kept + sum(others) + n_unplaced == 15  # every image accounted for once
    fox_names = {f"x_{p.name}" for p in fox}
    assert set(unplaced) >= fox_names or (others and others[0] >= 3)
    assert result.warnings[0].endswith(
        "The images were downscaled to 800 px on the long side (max_image_size=800; the "
        "capture has 1920 px), too small for enough features to match: try a larger "
        "max_image_size (at least 1000) or the default 1200."
    )
    report = json.loads(result.report_path.read_text())
    assert report["models"] == result.models


def _left_out_in_warning(text: str, kept: int, total: int) -> tuple[list[int], list[str], int]:
    """Parse the placement warning: (images per other model, names listed as placed in
    none, how many are placed in none)."""
    pct = f"{kept / total:.0%}"
    names = r"(?P<names>.+?)(?: and (?P<more>\d+) more)?"
    alone = re.match(
        rf"(?P<n>\d+) of {total} images could not be placed in the model and (?:was|were) "
        rf"left out: {names}\. ",
        text,
    )
    split = re.match(
        rf"the images formed (?P<models>\d+) separate models that could not be joined; the "
        rf"result uses the largest, which holds {kept} of {total} images \({pct}\); the "
        r"other (?:model holds (?P<one>\d+) images?|(?P<k>\d+) models hold (?P<many>.+?) "
        rf"images)(?:, and (?P<n>\d+) images? could not be placed in any model: {names})?\. ",
        text,
    )
    found = alone or split
    assert found, text
    listed = re.split(r", | and ", found["names"]) if found["names"] else []
    assert int(found["n"] or 0) == len(listed) + int(found["more"] or 0)
    others: list[int] = []
    if split:
        many = split["many"]
        others = (
            [int(split["one"])] if split["one"] else [int(n) for n in re.split(", | and ", many)]
        )
        assert int(split["models"]) == len(others) + 1
        assert others == sorted(others, reverse=True)
    return others, listed, int(found["n"] or 0)


# --- isolated failures (S-01, S-06) -------------------------------------------------------
async def _run_isolated(images: Path, work: Path, size: int) -> JobFailed:
    """Run ``run_sfm`` in a child process group as the worker does (``ctx.run_isolated``)
    and return its failure; a native abort must map to the same clear failure."""
    try:
        result = await run_isolated(run_sfm, images, work, max_image_size=size)
    except JobFailed as failure:
        return failure
    except ChildCrashed as crash:  # e.g. SIGABRT from a glog check inside COLMAP
        classified = classify_native_abort(crash.stderr_tail)
        assert classified is not None, f"unclassified native crash: {crash}"
        return classified
    raise AssertionError(f"expected a failure, got {result.registered_images} registered")


async def test_three_copies_of_one_photo_fail_clearly_in_a_child(tmp_path: Path) -> None:
    src = SKULL / "56.jpg"
    images = _link(tmp_path / "images", [src] * 3, ["a.jpg", "b.jpg", "c.jpg"])
    failure = await _run_isolated(images, tmp_path / "work", 800)
    assert failure.code == "sfm_insufficient_registration"
    if "native_message" not in failure.details:
        assert failure.details["total_images"] == 3
        assert failure.details["match_graph"]["distinct_views"] == 1
        assert "1 distinct view" in failure.message


async def test_two_far_apart_photos_fail_clearly_in_a_child(tmp_path: Path) -> None:
    # front and back of the skull: nothing in common
    images = _link(tmp_path / "images", [SKULL / "53.jpg", SKULL / "60.jpg"])
    failure = await _run_isolated(images, tmp_path / "work", 800)
    assert failure.code == "sfm_insufficient_registration"
    if "native_message" not in failure.details:
        assert failure.details["total_images"] == 2
        assert failure.details["registered_images"] == 0
    report = json.loads((tmp_path / "work" / "sfm_report.json").read_text())
    assert report["status"] == "failed"
    assert report["code"] == "sfm_insufficient_registration"


async def test_sliding_crops_of_one_photo_fail_as_degenerate_motion(tmp_path: Path) -> None:
    photo = Image.open(SKULL / "56.jpg").convert("RGB")
    w, h = photo.size
    cw, ch = int(w * 0.6), int(h * 0.8)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):  # a camera panning across one view: no parallax at all
        x = (w - cw) * i // 5
        photo.crop((x, (h - ch) // 2, x + cw, (h - ch) // 2 + ch)).save(images / f"p{i}.png")
    failure = await _run_isolated(images, tmp_path / "work", 800)
    assert failure.code == "degenerate_motion"
    assert "walk around the object" in failure.message.lower()
    graph = failure.details["match_graph"]
    assert graph["verified_pairs"] >= 5
    assert graph["general_pairs"] == 0
    # fast: rejected from the match graph, before incremental mapping started
    report = json.loads((tmp_path / "work" / "sfm_report.json").read_text())
    assert "mapping" not in report["timings_s"]
    assert not any((tmp_path / "work" / "models").iterdir())
