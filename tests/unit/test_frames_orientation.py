"""Display matrix with rotations and mirrors, as the ffmpeg CLI applies it (V-01).

The expected image is "rotate counter-clockwise by the tag, then mirror", PyAV's
definition of ``set_display_rotation(degrees, hflip, vflip)``; all 16 combinations were
also checked once against ffmpeg 5.1's auto-rotated output while writing this module.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from arforge.photogrammetry.orientation import IDENTITY, frame_transform, transform_from_matrix

STORED = np.zeros((48, 64, 3), np.uint8)
STORED[:10, :20] = 255
STORED[30:, 50:, 0] = 200
STORED[20:28, 5:9, 1] = 180


def _tagged(path: Path, rotation: int, hflip: bool, vflip: bool) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        s.options = {"qp": "0"}  # lossless, so pixels compare exactly
        s.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        for p in s.encode(av.VideoFrame.from_ndarray(STORED)):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("hflip", [False, True])
@pytest.mark.parametrize("vflip", [False, True])
def test_display_matrix_applied_like_the_cli(
    tmp_path: Path, rotation: int, hflip: bool, vflip: bool
) -> None:
    path = _tagged(tmp_path / "t.mp4", rotation, hflip, vflip)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        got = frame_transform(frame).apply(frame.to_ndarray(format="rgb24"))
    expected = np.rot90(STORED, rotation // 90)
    if hflip:
        expected = expected[:, ::-1]
    if vflip:
        expected = expected[::-1]
    assert got.shape == expected.shape
    assert np.abs(got.astype(np.int16) - expected).max() <= 2


def test_identity_without_matrix() -> None:
    assert transform_from_matrix(None) == IDENTITY
    img = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert np.array_equal(IDENTITY.apply(img), img)


def test_fox_matrix_turns_clockwise() -> None:
    """The fox capture's tag (-90): stored landscape becomes portrait, turned clockwise."""
    m = np.array([0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30], dtype=np.int32)
    t = transform_from_matrix(m.tobytes(), -90)
    img = np.zeros((2, 3), np.uint8)
    img[0, 0] = 1  # top-left of the stored frame goes to the top-right when turned clockwise
    out = t.apply(img)
    assert out.shape == (3, 2) and out[0, 1] == 1
    assert t.displayed_size(1920, 1080) == (1080, 1920)
