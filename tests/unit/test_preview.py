"""Preview rendering: a three-quarter view of the textured model, framed, shaded and
textured, saved as PNG."""

from __future__ import annotations

import numpy as np
from pg_scenes import textured_blob
from PIL import Image

from arforge.photogrammetry import meshing, preview


def _placed():
    _, tm = textured_blob()
    rot = np.eye(3)
    placed = meshing.transform(tm.mesh, meshing.placement(tm.mesh, rot))
    return type(tm)(placed, tm.uvs, tm.texture, tm.coverage)


def test_preview_frames_and_textures_the_model(tmp_path) -> None:
    tm = _placed()
    path = preview.write_preview(tm, tmp_path / "preview.png", 400, 300)
    img = np.asarray(Image.open(path))
    assert img.shape == (300, 400, 3)
    corners = img[[0, 0, -1, -1], [0, -1, 0, -1]].astype(int)
    assert np.all(np.abs(corners[:, 0] - corners[:, 1]) < 2)  # background is grey
    centre = img[100:200, 150:250].reshape(-1, 3).astype(float)
    bg = np.linspace(235, 200, 300)[100:200].mean()
    assert np.abs(centre.mean(0) - bg).max() > 20  # the model covers the centre
    assert centre.std(0).mean() > 10  # textured and shaded, not flat
    obj = np.abs(img.astype(float) - img[:, :1].astype(float)).max(2) > 3
    rows, cols = np.nonzero(obj)
    # framed: fully inside the image, filling a good part of it
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < 299 and cols.max() < 399
    assert (rows.max() - rows.min()) > 120


def test_look_at_points_the_camera_at_the_target() -> None:
    eye = np.array([3.0, 2.0, 4.0])
    R, t = preview.look_at(eye, np.zeros(3))
    assert np.allclose(R @ np.zeros(3) + t, [0, 0, np.linalg.norm(eye)])
    assert (R @ np.array([0, 1.0, 0]))[1] < 0  # world up is image up (-y)
