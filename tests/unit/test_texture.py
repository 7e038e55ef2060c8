"""UV unwrap and texture baking: colours baked from the synthetic views match the surface's
true colour function; coverage is reported."""

from __future__ import annotations

import numpy as np
from pg_scenes import textured_blob

from arforge.photogrammetry import synthetic, texture


def test_unwrap_gives_uvs_in_the_unit_square() -> None:
    _, tm = textured_blob()
    assert tm.uvs.shape == (len(tm.mesh.vertices), 2)
    assert tm.uvs.min() >= 0 and tm.uvs.max() <= 1
    assert len(tm.mesh.faces) <= 3000


def test_baked_colours_match_the_true_surface_colour() -> None:
    _, tm = textured_blob()
    size = tm.texture.shape[0]
    face, bary = texture.rasterize_atlas(tm.mesh, tm.uvs, size)
    inside = face >= 0
    assert inside.mean() > 0.3  # the atlas is used, not a speck
    ys, xs = np.nonzero(inside)
    X = np.einsum(
        "nk,nkd->nd", bary[inside].astype(np.float64), tm.mesh.vertices[tm.mesh.faces[face[inside]]]
    )
    truth = synthetic.Pattern(seed=3, fmin=1.5, fmax=4.0)(X).astype(np.float32)
    baked = tm.texture[ys, xs].astype(np.float32)
    err = np.abs(baked - truth).mean(1)
    assert np.median(err) < 8, np.median(err)
    assert np.percentile(err, 90) < 20
    assert tm.coverage > 0.95, tm.coverage


def test_coverage_drops_when_views_see_only_one_side() -> None:
    sc, tm = textured_blob()
    front = [v for v in sc.views if v.center[2] > 3.0]
    assert 0 < len(front) < len(sc.views)
    half = texture.bake_texture(tm.mesh, tm.uvs, front, size=256)
    assert 0.2 < half.coverage < 0.7, half.coverage


def test_fill_gutters_fills_every_texel() -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), bool)
    img[10:20, 10:20] = (200, 100, 50)
    mask[10:20, 10:20] = True
    out = texture.fill_gutters(img, mask, iterations=4)
    assert (out[10:20, 10:20] == (200, 100, 50)).all()
    assert (out[8, 15] == (200, 100, 50)).all()  # grown
    assert (out[0, 0] == (200, 100, 50)).all()  # rest painted with the mean colour
