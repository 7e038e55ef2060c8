"""A registration failure on images downscaled by ``max_image_size`` names the parameter.

The bundled skull walk-around registers 30/30 at the default 1200 px but only a handful
of frames at 640 px (quality draft: 4096 SIFT features), so the failure there is caused
by the size, not the capture.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from arforge.photogrammetry.frames import extract_keyframes
from arforge.photogrammetry.pipeline import QUALITY
from arforge.photogrammetry.sfm import run_sfm
from arforge.photogrammetry.sfm_size import SMALL_IMAGE_PX, feature_scale, size_advice
from arforge.shared.errors import JobFailed

REPO = Path(__file__).resolve().parents[2]
SKULL = REPO / "samples" / "skull" / "skull-walkaround.mp4"
DRAFT_FEATURES = QUALITY["draft"][1]


@pytest.fixture(scope="module")
def frames_640(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The skull frames as the ingest writes them with max_image_size=640, and the
    source's long side."""
    out = tmp_path_factory.mktemp("skull640") / "images"
    report = extract_keyframes(SKULL, out, max_image_size=640)
    assert (report.output_width, report.output_height) == (640, 427)
    return out, max(report.width, report.height)


def test_failure_after_downscaling_names_max_image_size(
    frames_640: tuple[Path, int], tmp_path: Path
) -> None:
    images, source = frames_640
    with pytest.raises(JobFailed) as exc:
        run_sfm(
            images,
            tmp_path / "sfm",
            ordered=True,
            max_image_size=640,
            source_long_side=source,
            max_num_features=DRAFT_FEATURES,
        )
    failure = exc.value
    assert failure.code == "sfm_insufficient_registration"
    assert failure.details["total_images"] == 30
    assert failure.details["registered_images"] < 15
    assert failure.details["image_size"] == {
        "analysed_px": 640,
        "source_px": 1200,
        "max_image_size": 640,
    }
    msg = failure.message
    assert "downscaled to 640 px" in msg and "max_image_size=640" in msg
    assert "the capture has 1200 px" in msg
    assert "default 1200" in msg
    # the size comes first; the capture advice is only the fallback
    assert msg.index("max_image_size") < msg.index("capture more")


def test_failure_on_natively_small_images_blames_the_capture(
    frames_640: tuple[Path, int], tmp_path: Path
) -> None:
    """Same 640 px frames given as the capture itself (nothing was downscaled): a larger
    max_image_size could not help, so the message does not suggest it."""
    images, _ = frames_640
    with pytest.raises(JobFailed) as exc:
        run_sfm(
            images,
            tmp_path / "sfm",
            ordered=True,
            max_image_size=1200,
            max_num_features=DRAFT_FEATURES,
        )
    failure = exc.value
    assert failure.code == "sfm_insufficient_registration"
    assert failure.details["image_size"]["source_px"] == 640
    assert "max_image_size" not in failure.message
    assert "Capture more overlapping views" in failure.message


def test_sift_downscaling_alone_counts_as_downscaled(tmp_path: Path) -> None:
    """Full-size files with a small max_image_size: SIFT downscales them itself."""
    for i, size in enumerate([(1200, 800), (800, 1200), (1000, 700)]):
        Image.new("RGB", size).save(tmp_path / f"{i}.jpg")
    names = ["0.jpg", "1.jpg", "2.jpg"]
    small = feature_scale(tmp_path, names, 640, None)
    assert (small.analysed_px, small.source_px) == (640, 1200)
    assert small.downscaled_small and "downscaled to 640 px" in (size_advice(small) or "")
    full = feature_scale(tmp_path, names, 1200, None)
    assert (full.analysed_px, full.source_px) == (1200, 1200)
    assert not full.downscaled_small and size_advice(full) is None
    at_floor = feature_scale(tmp_path, names, SMALL_IMAGE_PX, None)
    assert at_floor.analysed_px == SMALL_IMAGE_PX and size_advice(at_floor) is None
