"""Frame sharpness: variance of the Laplacian on a downscaled grey image.

Measure from Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a
comparative study", ICPR 2000 (the "LAPV" operator; also Pertuz et al., Pattern
Recognition 46(5), 2013). It is computed on the luma plane, read straight from the
decoder's buffer (no colour conversion), area-downscaled to ``ANALYSIS_SIZE`` on the long
side: fast (about 1 ms per 1080p frame) and the same scale for every video.

``normalized`` divides by the grey-level variance, so a low-contrast but sharp frame is
not mistaken for a blurred one; it is what blur rejection compares across a clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Long side (px) of the grey image sharpness is measured on.
ANALYSIS_SIZE = 640


@dataclass(frozen=True)
class Sharpness:
    """``laplacian_var``: variance of the Laplacian (grey levels^2, 8-bit scale);
    ``normalized``: the same divided by the grey variance (dimensionless)."""

    laplacian_var: float
    normalized: float


def luma(frame: object) -> np.ndarray:
    """The luma plane of a decoded PyAV ``VideoFrame``: uint8 (a view of the decoder's
    buffer) for 8-bit formats, float32 scaled to 0..255 for deeper ones.

    Planar / semi-planar YUV and grey formats are read without conversion (8 to 16 bit);
    other formats (RGB, palette) are converted to grey by swscale.
    """
    fmt = frame.format  # type: ignore[attr-defined]
    name = fmt.name
    if name.startswith(("yuv", "yuvj", "nv12", "nv21", "gray")) and not name.startswith("yuva4"):
        plane = frame.planes[0]  # type: ignore[attr-defined]
        bits = fmt.components[0].bits
        dtype = np.uint8 if bits <= 8 else (np.dtype("<u2") if name.endswith("le") else ">u2")
        itemsize = np.dtype(dtype).itemsize
        arr = np.frombuffer(plane, dtype=dtype)
        arr = arr.reshape(plane.height, plane.line_size // itemsize)[:, : plane.width]
        if bits > 8:
            return arr.astype(np.float32) * (255.0 / float((1 << bits) - 1))
        return arr
    return frame.to_ndarray(format="gray")  # type: ignore[attr-defined]


def analysis_image(grey: np.ndarray, size: int = ANALYSIS_SIZE) -> np.ndarray:
    """Area-downscale ``grey`` (H x W, uint8 or float32) so its long side is at most
    ``size``; returns float32 in 0..255."""
    h, w = grey.shape[:2]
    scale = size / max(h, w)
    if scale < 1.0:
        grey = cv2.resize(
            grey,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
    return grey.astype(np.float32)


def measure(small_grey: np.ndarray) -> Sharpness:
    """Sharpness of an (already downscaled) float32 grey image."""
    lap = cv2.Laplacian(small_grey, cv2.CV_32F, ksize=1)
    lap_var = float(lap.var())
    contrast = float(small_grey.var())
    normalized = lap_var / contrast if contrast > 1.0 else 0.0
    return Sharpness(laplacian_var=lap_var, normalized=normalized)
