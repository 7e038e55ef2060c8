"""Small generated media for the ingest tests (probe, keyframes, photos).

Videos are encoded with PyAV at test time: a seeded random-block texture that pans one
block per frame (so consecutive frames differ and sharpness is meaningful) with an
asymmetric marker (red block top-left, blue block bottom-right) to check orientation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

BLOCK = 8
RED = (230, 20, 20)
BLUE = (20, 20, 230)


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A wide random-block RGB texture (height x (width + 400) x 3 uint8)."""
    rng = np.random.default_rng(seed)
    bw, bh = (width + 400) // BLOCK + 1, height // BLOCK + 1
    blocks = rng.integers(0, 256, (bh, bw, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(blocks, BLOCK, axis=0), BLOCK, axis=1)
    return big[:height, : width + 400]


def pattern_frame(i: int, width: int, height: int, tex: np.ndarray | None = None) -> np.ndarray:
    """Upright frame ``i``: panned texture plus the red (top-left) / blue (bottom-right)
    markers, each a quarter of the shorter side."""
    tex = texture(width, height) if tex is None else tex
    shift = (i * BLOCK) % 400
    img = np.ascontiguousarray(tex[:, shift : shift + width])
    m = min(width, height) // 4
    img[:m, :m] = RED
    img[-m:, -m:] = BLUE
    return img


def encode(
    path: Path,
    frames: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    *,
    n: int | None = None,
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    tag: str | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB frames to ``path``. ``frames``: a list or ``f(i) -> frame`` for
    ``i < n``. ``pts`` (in ``time_base``, default 1/fps) gives variable frame rates;
    ``rotation`` sets the display matrix (counter-clockwise degrees, as PyAV reads it)."""
    count = len(frames) if not callable(frames) else int(n or 0)
    get = frames if callable(frames) else (lambda i: frames[i])
    first = get(0)
    h, w = first.shape[:2]
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        opts = {"preset": "ultrafast"} if codec == "libx264" else {}
        if codec == "libx265":
            opts = {"preset": "ultrafast", "x265-params": "log-level=error"}
        opts.update(options or {})
        s.options = opts
        if tag:
            s.codec_context.codec_tag = tag
        if time_base is not None:
            s.codec_context.time_base = time_base
            s.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(get(i) if i else first, format="rgb24")
            if pts is not None:
                frame.pts = int(pts[i])
                frame.time_base = time_base or Fraction(1, fps)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def encode_audio_only(path: Path, seconds: float = 2.0) -> Path:
    """An AAC-only .mp4 (a 440 Hz tone)."""
    rate = 44100
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=rate)
        t = 0
        while t < seconds * rate:
            x = np.arange(t, t + 1024) / rate
            a = (0.2 * np.sin(2 * np.pi * 440 * x)).astype(np.float32)[None, :]
            fr = av.AudioFrame.from_ndarray(a, format="fltp", layout="mono")
            fr.sample_rate = rate
            fr.pts = t
            t += 1024
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def blur(img: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def red_corner(img: np.ndarray) -> str:
    """Which corner holds the red marker: 'tl', 'tr', 'bl' or 'br'."""
    h, w = img.shape[:2]
    m = max(2, min(h, w) // 10)
    corners = {
        "tl": img[:m, :m],
        "tr": img[:m, -m:],
        "bl": img[-m:, :m],
        "br": img[-m:, -m:],
    }
    redness = {k: float(v[..., 0].mean() - v[..., 2].mean()) for k, v in corners.items()}
    return max(redness, key=lambda k: redness[k])
