"""The whole dense chain on a real capture: pycolmap SfM of the 30 skull photos, then
reconstruct_model at low quality -> GLB, USDZ and preview that open and carry a texture."""

from __future__ import annotations

import numpy as np
import pytest
from pg_scenes import skull_sparse
from PIL import Image

from arforge.photogrammetry import usdz
from arforge.photogrammetry.reconstruct import reconstruct_model


@pytest.mark.slow
def test_skull_reconstruction_end_to_end(tmp_path) -> None:
    import trimesh

    sparse, images = skull_sparse()
    seen: list[tuple[float, str]] = []
    report = reconstruct_model(
        sparse,
        images,
        tmp_path,
        target_faces=8000,
        texture_size=1024,
        quality="low",
        on_progress=lambda f, s: seen.append((f, s)),
    )
    assert 7000 <= report.faces <= 8000
    assert report.views >= 27
    assert report.texture_coverage > 0.8
    assert report.bbox_min[1] == pytest.approx(0.0, abs=1e-6)  # standing on the ground
    size = np.subtract(report.bbox_max, report.bbox_min)
    assert size.min() > 0.1 * size.max()  # a solid object, not a sliver
    fr = [f for f, _ in seen]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    assert {"depth_maps", "fusion", "texture", "export"} <= {s for _, s in seen}

    (geom,) = trimesh.load(tmp_path / "model.glb").geometry.values()
    assert len(geom.faces) == report.faces and geom.visual.uv is not None
    info = usdz.open_usdz(tmp_path / "model.usdz")
    assert info["up_axis"] == "Y" and info["faces"] == report.faces and info["textures"]
    usdz.check_usdz_layout(tmp_path / "model.usdz")
    img = np.asarray(Image.open(tmp_path / "preview.png"))
    # the skull is bone-coloured: the preview's object pixels are warm (red > blue)
    obj = np.abs(img.astype(int) - img[:, :1].astype(int)).max(2) > 10
    assert obj.mean() > 0.05
    assert img[obj][:, 0].mean() > img[obj][:, 2].mean() + 15
