"""Shared, cached inputs for the dense photogrammetry tests (imported by test_mvs*, test_meshing*,
test_texture*, test_gltf*, test_usdz*, test_preview*).

* ``synthetic_scene()``: a textured blob rendered from two camera rings, with true depth.
* ``skull_sparse()``: a real SfM model of the bundled skull photos made with pycolmap
  (full 1200x800 size, exhaustive matching), cached per test session in a temp dir.
* ``textured_blob()``: the true blob mesh, decimated, unwrapped and baked from the synthetic
  views (a small real TexturedMesh for the exporters).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SKULL_IMAGES = REPO.parent / "shared" / "data" / "skull" / "images"


@functools.cache
def synthetic_scene(rotated: bool = False):
    from arforge.photogrammetry import synthetic

    rot = None
    if rotated:
        from scipy.spatial.transform import Rotation

        rot = Rotation.from_euler("xyz", [35, -20, 110], degrees=True).as_matrix()
    return synthetic.make_scene(
        n_per_ring=8, elevations_deg=(-20.0, 15.0, 50.0), size=(256, 192), rotation=rot
    )


@functools.cache
def textured_blob(texture_size: int = 512):
    from arforge.photogrammetry import meshing, synthetic, texture

    sc = synthetic.make_scene(
        n_per_ring=6,
        elevations_deg=(-30.0, 10.0, 50.0),
        size=(256, 192),
        pattern=synthetic.Pattern(seed=3, fmin=1.5, fmax=4.0),
    )
    mesh = meshing.decimate(sc.mesh, 3000)
    unwrapped, uvs = texture.unwrap(mesh, texture_size)
    return sc, texture.bake_texture(unwrapped, uvs, sc.views, texture_size)


@functools.cache
def skull_sparse() -> tuple[Path, Path]:
    """(sparse_dir, image_dir) of a pycolmap reconstruction of the 30 skull photos."""
    import pycolmap

    root = Path(tempfile.mkdtemp(prefix="arforge-skull-sfm-"))
    images = root / "images"
    images.mkdir()
    for i, p in enumerate(sorted(SKULL_IMAGES.glob("*.jpg")), 1):
        shutil.copy(p, images / f"{i:06d}.jpg")
    db = root / "database.db"
    pycolmap.extract_features(db, images, camera_mode=pycolmap.CameraMode.SINGLE)
    pycolmap.match_exhaustive(db)
    models = root / "models"
    models.mkdir()
    recs = pycolmap.incremental_mapping(db, images, models)
    best = max(recs.values(), key=lambda r: r.num_reg_images())
    sparse = root / "sparse"
    sparse.mkdir()
    best.write(sparse)
    return sparse, images


def depth_errors(maps, truths) -> tuple[np.ndarray, float]:
    """Relative depth errors over pixels with both an estimate and a true depth, and the
    share of true-object pixels that got an estimate."""
    rel, got, tot = [], 0, 0
    for m, gt in zip(maps, truths, strict=True):
        ok = (m.depth > 0) & (gt > 0)
        rel.append(np.abs(m.depth[ok] - gt[ok]) / gt[ok])
        got += int(ok.sum())
        tot += int((gt > 0).sum())
    return np.concatenate(rel), got / max(tot, 1)
