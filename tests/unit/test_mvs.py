"""Plane-sweep MVS against ground truth (synthetic orbit) and on the real skull SfM model."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from pg_scenes import depth_errors, skull_sparse, synthetic_scene

from arforge.photogrammetry import mvs

PARAMS = mvs.MVSParams(max_side=256, num_planes=64, num_neighbors=4, patch=7)


@functools.cache
def _synthetic_depths():
    sc = synthetic_scene()
    views, maps = mvs.compute_depth_maps(sc.views, PARAMS)
    return sc, views, maps


def test_depth_maps_match_ground_truth() -> None:
    sc, _, maps = _synthetic_depths()
    rel, coverage = depth_errors(maps, sc.depths)
    assert np.median(rel) < 0.003, np.median(rel)  # depth ~3-5 units: < 1.5 cm per 4 m
    assert np.percentile(rel, 95) < 0.02
    assert coverage > 0.4, coverage
    # the untextured background gets no depth except for patch overlap at silhouettes
    claimed = sum(int((m.depth[gt == 0] > 0).sum()) for m, gt in zip(maps, sc.depths, strict=True))
    valid = sum(int((m.depth > 0).sum()) for m in maps)
    assert claimed < 0.02 * valid, (claimed, valid)


def test_geometric_filter_rejects_inconsistent_depths() -> None:
    sc, views, maps = _synthetic_depths()
    rng = np.random.default_rng(1)
    bad = [mvs.DepthMap(m.depth.copy(), m.confidence) for m in maps]
    noisy = bad[0].depth > 0
    bad[0].depth[noisy] *= rng.uniform(0.8, 1.2, noisy.sum()).astype(np.float32)
    neighbors = mvs.select_neighbors(views, PARAMS)
    out = mvs.geometric_filter(views, bad, neighbors, min_consistent=2)
    kept = out[0].depth > 0
    err = np.abs(bad[0].depth - sc.depths[0]) / np.maximum(sc.depths[0], 1e-6)
    # only depths that happen to be close to the truth survive
    assert kept.sum() < 0.2 * noisy.sum()
    assert np.median(err[kept]) < 0.01
    # maps that do not use the corrupted view are filtered exactly as without it
    clean = mvs.geometric_filter(views, maps, neighbors, min_consistent=2)
    j = next(j for j in range(1, len(maps)) if 0 not in neighbors[j])
    assert clean[j].valid_ratio > 0.5 * maps[j].valid_ratio
    assert np.array_equal(out[j].depth, clean[j].depth)


def test_neighbors_are_nearby_cameras() -> None:
    sc = synthetic_scene()
    neighbors = mvs.select_neighbors(sc.views, PARAMS)
    for i, nb in enumerate(neighbors):
        assert len(nb) == PARAMS.num_neighbors and i not in nb
        ci = sc.views[i].center
        for j in nb:
            cj = sc.views[j].center
            ang = np.degrees(np.arccos(ci @ cj / (np.linalg.norm(ci) * np.linalg.norm(cj))))
            assert ang < 60, (i, j, ang)


def test_focus_point_is_the_orbit_centre() -> None:
    sc = synthetic_scene()
    assert np.linalg.norm(mvs.focus_point(sc.views)) < 1e-6


def test_load_views_rejects_a_missing_model(tmp_path) -> None:
    with pytest.raises(mvs.MVSError) as e:
        mvs.load_views(tmp_path / "sparse", tmp_path / "images")
    assert e.value.code == "sparse_model_unreadable"


@pytest.mark.slow
def test_skull_views_and_depth_map() -> None:
    sparse, images = skull_sparse()
    views = mvs.load_views(sparse, images, max_side=800)
    assert len(views) >= 27
    v = views[0]
    assert max(v.size) == 800
    # SfM points project inside the undistorted image, in front of the camera
    uv, z = v.project(v.points)
    assert (z > 0).all()
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < v.size[0]) & (uv[:, 1] >= 0) & (uv[:, 1] < v.size[1])
    assert inside.mean() > 0.98
    params = mvs.MVSParams(max_side=384, num_planes=48, num_neighbors=4)
    small = [x.scaled(params.max_side) for x in views]
    nb = mvs.select_neighbors(small, params)
    near, far = mvs.depth_bounds(small[0])
    dm = mvs.plane_sweep(small[0], [small[j] for j in nb[0]], near, far, params)
    assert dm.valid_ratio > 0.08  # the skull fills about a third of the frame
    d = dm.depth[dm.depth > 0]
    assert near < d.min() and d.max() < far
