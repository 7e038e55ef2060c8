"""Fusion + meshing on the synthetic orbit: Chamfer distance to the true surface, object
isolation, hole filling, decimation, Y-up orientation and ground placement."""

from __future__ import annotations

import functools

import numpy as np
from pg_scenes import synthetic_scene

from arforge.photogrammetry import fusion, meshing, mvs, synthetic

PARAMS = mvs.MVSParams(max_side=256, num_planes=64, num_neighbors=4, patch=7)


@functools.cache
def _fused():
    sc = synthetic_scene(rotated=True)
    views, maps = mvs.compute_depth_maps(sc.views, PARAMS)
    pts, _ = fusion.fused_points(views, maps)
    region = fusion.object_region(views, pts)
    raw = fusion.integrate_tsdf(views, maps, region, resolution=128)
    return sc, views, region, meshing.from_open3d(raw)


def _boundary_edges(mesh: meshing.Mesh) -> int:
    e = np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return int((counts == 1).sum())


def test_tsdf_mesh_is_close_to_the_truth() -> None:
    sc, _, region, raw = _fused()
    mesh = meshing.isolate_object(raw, region.focus, region.radius)
    rec = synthetic.sample_surface(mesh, 30000)
    truth = synthetic.sample_surface(sc.mesh, 30000)
    accuracy, completeness = synthetic.chamfer(rec, truth)
    # the blob has radius ~1: the reconstructed surface lies within 2% of it on average
    assert accuracy < 0.02, accuracy
    assert completeness < 0.15, completeness  # Chamfer, including the unseen underside
    # the part the camera rings see well (above the lowest ring's grazing band) is complete
    from scipy.spatial import cKDTree

    seen = truth[truth @ sc.up > -0.45]
    d = cKDTree(rec).query(seen)[0]
    assert (d < 0.03).mean() > 0.95, (d < 0.03).mean()
    assert len(mesh.faces) > 5000


def test_isolate_object_drops_floaters_and_background() -> None:
    blob = synthetic.blob_mesh(resolution=30)
    small = synthetic.blob_mesh(radius=0.05, resolution=8)
    far = synthetic.blob_mesh(radius=0.5, resolution=10)
    parts = [
        blob,
        meshing.Mesh(small.vertices + np.array([1.5, 0, 0]), small.faces),
        meshing.Mesh(far.vertices + np.array([20.0, 0, 0]), far.faces),
    ]
    verts, faces, off = [], [], 0
    for p in parts:
        verts.append(p.vertices)
        faces.append(p.faces + off)
        off += len(p.vertices)
    merged = meshing.Mesh(np.concatenate(verts), np.concatenate(faces))
    out = meshing.isolate_object(merged, focus=np.zeros(3), radius=5.0)
    assert len(out.faces) == len(blob.faces)
    assert np.abs(out.vertices).max() < 1.5


def test_fill_small_holes_closes_a_hole() -> None:
    blob = synthetic.blob_mesh(resolution=30)
    cent = blob.vertices[blob.faces].mean(1)
    centre = blob.vertices[0]  # a point on the surface
    holed = meshing.Mesh(blob.vertices, blob.faces[np.linalg.norm(cent - centre, axis=1) > 0.15])
    assert _boundary_edges(holed) > 0
    filled = meshing.fill_small_holes(holed, max_radius=0.5)
    assert _boundary_edges(filled) == 0
    assert len(filled.faces) > len(holed.faces)


def test_decimation_hits_the_face_target() -> None:
    blob = synthetic.blob_mesh(resolution=60)
    assert len(blob.faces) > 6000
    out = meshing.decimate(blob, 2000)
    assert 1900 <= len(out.faces) <= 2000
    # shape preserved
    acc, comp = synthetic.chamfer(
        synthetic.sample_surface(out, 5000), synthetic.sample_surface(blob, 5000)
    )
    assert max(acc, comp) < 0.03
    assert meshing.decimate(out, 10_000) is out


def test_orientation_puts_plus_y_up_and_the_base_on_the_ground() -> None:
    sc, views, region, raw = _fused()
    rot = meshing.up_frame(views, region.focus)
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-9) and np.linalg.det(rot) > 0
    assert rot[1] @ sc.up > 0.999, rot[1] @ sc.up
    mesh = meshing.isolate_object(raw, region.focus, region.radius)
    placed = meshing.transform(mesh, meshing.placement(mesh, rot))
    lo, hi = placed.bounds
    assert abs(lo[1]) < 1e-9
    assert abs(lo[0] + hi[0]) < 1e-9 and abs(lo[2] + hi[2]) < 1e-9
    # the blob's true top (+up) ends up at the model's top
    top_true = sc.mesh.vertices[np.argmax(sc.mesh.vertices @ sc.up)]
    top_model = (meshing.placement(mesh, rot)[:3, :3] @ top_true)[1] + meshing.placement(mesh, rot)[
        1, 3
    ]
    assert top_model > 0.9 * hi[1]


def _cameras_facing(centres: np.ndarray) -> list[mvs.View]:
    from arforge.photogrammetry.preview import look_at

    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    views = []
    for c in centres:
        R, t = look_at(c, np.zeros(3))
        views.append(mvs.View(name="v", image=np.zeros((240, 320, 3), np.uint8), K=K, R=R, t=t))
    return views


def _head_on_wall(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A mounted-head stand-in: a blob (radius ~0.5) in front of a wall at z = -0.6."""
    blob = synthetic.sample_surface(synthetic.blob_mesh(radius=0.5, resolution=30), 20000)
    blob = blob[blob[:, 2] > -0.45]  # the back is hidden against the wall
    wall = np.column_stack(
        [rng.uniform(-2, 2, 30000), rng.uniform(-2, 2, 30000), rng.normal(-0.6, 0.004, 30000)]
    )
    return blob, wall


def test_background_wall_is_found_and_cut_off() -> None:
    rng = np.random.default_rng(0)
    blob, wall = _head_on_wall(rng)
    # cameras on an arc in front of the wall only (a walk-around of a mounted head)
    az = np.radians(np.linspace(-70, 70, 12))
    views = _cameras_facing(np.column_stack([4 * np.sin(az), 0.5 * np.ones(12), 4 * np.cos(az)]))
    pts = np.concatenate([blob, wall])
    (plane,) = fusion.background_planes(views, pts)
    assert abs(plane.normal @ [0, 0, 1]) > 0.999 and plane.normal[2] > 0  # towards cameras
    assert abs(plane.height(np.array([0.0, 0.0, -0.6]))) < 0.01
    assert (plane.height(wall) > plane.cut).mean() < 0.01  # the wall goes
    assert (plane.height(blob) > plane.cut).mean() > 0.95  # the head stays
    region = fusion.object_region(views, pts)
    assert region.planes and region.contains(blob).mean() > 0.9
    assert region.contains(wall).mean() < 0.01


def test_no_background_plane_without_one_or_with_cameras_all_around() -> None:
    rng = np.random.default_rng(1)
    blob, wall = _head_on_wall(rng)
    az = np.radians(np.linspace(0, 360, 12, endpoint=False))
    ring = _cameras_facing(np.column_stack([4 * np.sin(az), 0.5 * np.ones(12), 4 * np.cos(az)]))
    assert fusion.background_planes(ring, blob) == []  # an object alone
    # a "wall" the cameras walk behind is part of the object (a panel), not background
    assert fusion.background_planes(ring, np.concatenate([blob, wall])) == []
