"""Image size as SIFT sees it, and the advice to give when a small size may be the cause.

``max_image_size`` bounds the long side twice: the ingest downscales frames and photos
to it, and SIFT extraction downscales again to it. Too small, and too few features match
for registration. Measured with pycolmap 4.2.1, quality draft (4096 features),
sequential matching: the bundled skull sample (30 frames 1200x800, smooth, shiny, dark)
fails at 320-640 px (largest model 2-5/30 images), registers 25-26/30 at 680-800 px,
29/30 at 840 and 30/30 from 900 px; the textured fox capture registers 57/57 even at
320 px. So a small size is a likely cause, not a certain one: a registration failure on
images downscaled below :data:`SMALL_IMAGE_PX` names the parameter first and keeps the
capture advice as the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

#: Long side (px) under which downscaled images may be too small to register.
SMALL_IMAGE_PX = 1000
#: The photogrammetry contract's default ``max_image_size``.
DEFAULT_MAX_IMAGE_SIZE = 1200


@dataclass(frozen=True)
class FeatureScale:
    """``analysed_px``: long side SIFT works at; ``source_px``: long side of the capture
    before any downscaling (the ingest's source, or the image files); ``max_image_size``:
    the bound that was applied."""

    analysed_px: int
    source_px: int
    max_image_size: int

    @property
    def downscaled_small(self) -> bool:
        """Downscaled by ``max_image_size`` to under :data:`SMALL_IMAGE_PX`."""
        return self.source_px > self.analysed_px and self.analysed_px < SMALL_IMAGE_PX

    def as_dict(self) -> dict[str, Any]:
        return {
            "analysed_px": self.analysed_px,
            "source_px": self.source_px,
            "max_image_size": self.max_image_size,
        }


def feature_scale(
    image_dir: Path, names: Sequence[str], max_image_size: int, source_px: int | None
) -> FeatureScale:
    """Measure the largest long side in ``image_dir`` (headers only; unreadable files are
    skipped). ``source_px``: the capture's long side before the ingest downscaled it, if
    known."""
    files_px = 0
    for name in names:
        try:
            with Image.open(image_dir / name) as im:
                files_px = max(files_px, *im.size)
        except Exception:
            continue
    analysed = min(files_px, max_image_size) if files_px else max_image_size
    return FeatureScale(analysed, max(files_px, source_px or 0), max_image_size)


def size_advice(scale: FeatureScale) -> str | None:
    """A sentence naming ``max_image_size`` when the images were downscaled below
    :data:`SMALL_IMAGE_PX`; None otherwise."""
    if not scale.downscaled_small:
        return None
    return (
        f"The images were downscaled to {scale.analysed_px} px on the long side "
        f"(max_image_size={scale.max_image_size}; the capture has {scale.source_px} px), "
        f"too small for enough features to match: try a larger max_image_size (at least "
        f"{SMALL_IMAGE_PX}) or the default {DEFAULT_MAX_IMAGE_SIZE}."
    )
