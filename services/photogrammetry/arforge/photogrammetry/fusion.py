"""Depth-map fusion into a truncated signed distance volume, and surface extraction.

Method: volumetric range-image integration (Curless & Levoy, "A volumetric method for building
complex models from range images", SIGGRAPH 1996) with Open3D's ``UniformTSDFVolume``
(Zhou, Park & Koltun, "Open3D", 2018), then marching cubes (Lorensen & Cline 1987).
Open3D 0.20's ``ScalableTSDFVolume`` and ``VoxelBlockGrid`` return empty meshes on the CPU,
so the uniform volume is used on purpose.

The volume covers only the object region: the fused points near the cameras' focus point
(where the optical axes meet), so background depths (room, table far away) fall outside it.
A background plane the object stands on or hangs from (a table, a floor, a wallpapered wall
behind a mounted head) is touching the object, so the radius alone keeps it: such a plane is
found by RANSAC (Fischler & Bolles, CACM 1981) among the points near the focus, accepted when
it carries a large share of them with every camera on one side and object points in front,
and then every depth on or behind it is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from arforge.photogrammetry.mvs import DepthMap, MVSError, View, focus_point

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class Plane:
    """A background plane: unit ``normal`` (3,) pointing towards the cameras, a ``point`` (3,)
    on it, and ``cut``: points closer than this above it (world units) count as on it."""

    normal: np.ndarray
    point: np.ndarray
    cut: float

    def height(self, X: np.ndarray) -> np.ndarray:
        """Signed distance (..., ) of points X (..., 3) above the plane (cameras' side > 0)."""
        return (X - self.point) @ self.normal


@dataclass(frozen=True)
class Region:
    """Axis-aligned cube in world (SfM) units: ``origin`` (3,) lowest corner, ``size`` side;
    ``focus`` (3,) the cameras' focus point; ``radius`` the object search radius around it;
    ``planes``: background planes whose side away from the cameras is excluded."""

    origin: np.ndarray
    size: float
    focus: np.ndarray
    radius: float
    planes: tuple[Plane, ...] = ()

    def contains(self, X: np.ndarray) -> np.ndarray:
        """Boolean mask (...,) of points X (..., 3) inside the cube and above every plane."""
        inside = np.all((self.origin <= X) & (self.origin + self.size >= X), axis=-1)
        for pl in self.planes:
            inside &= pl.height(X) > pl.cut
        return inside


def background_planes(
    views: Sequence[View],
    points: np.ndarray,
    *,
    max_planes: int = 2,
    min_share: float = 0.2,
    min_front: float = 0.05,
    tol: float = 0.01,
    iterations: int = 400,
    seed: int = 0,
) -> list[Plane]:
    """Large planes behind or under the object among ``points`` (N, 3), the dense points near
    the focus (world units, in the search radius ``r``).

    RANSAC with inlier distance ``tol * r``; a plane is accepted when its inliers are at least
    ``min_share`` of ``points``, every camera centre lies on one side of it (at least ``0.1 r``
    away: the cameras never went behind a wall or under a table) and at least ``min_front``
    of the points lie in front of it (else the plane is the object itself, e.g. a flat face
    photographed from one side). The plane is refitted to its inliers by least squares; its
    ``cut`` is four robust standard deviations of the inlier residuals, at least ``tol r / 2``.
    Up to ``max_planes`` planes (a floor and a wall), each on the points left by the others.
    """
    if len(points) < 100:
        return []
    focus = focus_point(views)
    r = float(np.max(np.linalg.norm(points - focus, axis=1)))
    centres = np.array([v.center for v in views])
    rng = np.random.default_rng(seed)
    total = len(points)
    rest = points[rng.choice(total, min(total, 30_000), replace=False)]
    total = len(rest)
    planes: list[Plane] = []
    for _ in range(max_planes):
        if len(rest) < 100:
            break
        best_n, best_p, best_count = None, None, 0
        for _ in range(iterations):
            a, b, c = rest[rng.choice(len(rest), 3, replace=False)]
            n = np.cross(b - a, c - a)
            norm = np.linalg.norm(n)
            if norm < 1e-12:
                continue
            n /= norm
            count = int((np.abs((rest - a) @ n) < tol * r).sum())
            if count > best_count:
                best_n, best_p, best_count = n, a, count
        if best_n is None or best_count < min_share * total:
            break
        inl = rest[np.abs((rest - best_p) @ best_n) < tol * r]
        centre = inl.mean(0)
        n = np.linalg.svd(inl - centre, full_matrices=False)[2][2]
        side = (centres - centre) @ n
        if np.all(side < 0):
            n, side = -n, -side
        if not np.all(side > 0.1 * r):
            break
        res = (inl - centre) @ n
        sigma = 1.4826 * float(np.median(np.abs(res - np.median(res))))
        plane = Plane(normal=n, point=centre, cut=max(4 * sigma, 0.5 * tol * r))
        h = plane.height(rest)
        if (h > plane.cut).sum() < min_front * total:
            break
        planes.append(plane)
        rest = rest[h > plane.cut]
    return planes


def fused_points(
    views: Sequence[View], maps: Sequence[DepthMap], max_points: int = 2_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """All valid depth pixels as world points (N, 3) float64 with RGB colours (N, 3) uint8,
    uniformly subsampled to at most ``max_points``."""
    pts, cols = [], []
    for v, m in zip(views, maps, strict=True):
        ok = m.depth > 0
        if ok.any():
            pts.append(v.backproject(m.depth)[ok])
            cols.append(v.image[ok])
    if not pts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    P, C = np.concatenate(pts), np.concatenate(cols)
    if len(P) > max_points:
        idx = np.random.default_rng(0).choice(len(P), max_points, replace=False)
        P, C = P[idx], C[idx]
    return P, C


def object_region(
    views: Sequence[View],
    points: np.ndarray,
    radius_factor: float = 0.6,
    remove_planes: bool = True,
) -> Region:
    """The cube enclosing the fused points near the cameras' focus point (1st-99th percentile
    per axis, padded by 20%), above any background plane (see :func:`background_planes`,
    skipped when ``remove_planes`` is False).

    "Near" is within ``min(radius_factor * d, 1.5 * d * tan(half short-side field of view))``
    with ``d`` the median camera distance to the focus: a captured object is framed by the
    photos, so it lies within about the frame's half-width around the focus; walls and floors
    beyond that are background. Raises :class:`MVSError` ``no_dense_points`` when no point
    lies there.
    """
    focus = focus_point(views)
    dists = np.array([np.linalg.norm(v.center - focus) for v in views])
    half_fov = np.array(
        [min(v.size[0] / (2 * v.K[0, 0]), v.size[1] / (2 * v.K[1, 1])) for v in views]
    )
    cam_dist = float(np.median(dists))
    radius = float(min(radius_factor * cam_dist, 1.5 * np.median(dists * half_fov)))
    near = points[np.linalg.norm(points - focus, axis=1) < radius] if len(points) else points
    planes = background_planes(views, near) if remove_planes else []
    for pl in planes:
        near = near[pl.height(near) > pl.cut]
    if len(near) < 100:
        raise MVSError(
            "no_dense_points",
            f"dense matching found {len(near)} points near the object (need 100); "
            "the photos may lack texture or overlap",
        )
    lo = np.percentile(near, 1, axis=0)
    hi = np.percentile(near, 99, axis=0)
    size = float((hi - lo).max()) * 1.2
    origin = (lo + hi) / 2 - size / 2
    return Region(origin=origin, size=size, focus=focus, radius=radius, planes=tuple(planes))


def integrate_tsdf(
    views: Sequence[View],
    maps: Sequence[DepthMap],
    region: Region,
    resolution: int = 256,
    trunc_voxels: float = 5.0,
    on_progress: ProgressFn | None = None,
):
    """Integrate depth maps into a ``UniformTSDFVolume`` over ``region`` and extract a
    coloured triangle mesh (``open3d.geometry.TriangleMesh``, world units).

    ``resolution``: voxels per side; the truncation distance is ``trunc_voxels`` voxels.
    Depths outside the region are dropped before integration.
    """
    import open3d as o3d

    voxel = region.size / resolution
    vol = o3d.pipelines.integration.UniformTSDFVolume(
        length=region.size,
        resolution=resolution,
        sdf_trunc=trunc_voxels * voxel,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8,
        origin=region.origin.reshape(3, 1).astype(np.float64),
    )
    for i, (v, m) in enumerate(zip(views, maps, strict=True)):
        depth = m.depth.copy()
        ok = depth > 0
        if ok.any():
            inside = region.contains(v.backproject(depth))
            depth[~inside] = 0
        if not (depth > 0).any():
            continue
        w, h = v.size
        intr = o3d.camera.PinholeCameraIntrinsic(w, h, v.K[0, 0], v.K[1, 1], v.K[0, 2], v.K[1, 2])
        extr = np.eye(4)
        extr[:3, :3] = v.R
        extr[:3, 3] = v.t
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(v.image)),
            o3d.geometry.Image(np.ascontiguousarray(depth, dtype=np.float32)),
            depth_scale=1.0,
            depth_trunc=float(depth.max()) + 1.0,
            convert_rgb_to_intensity=False,
        )
        vol.integrate(rgbd, intr, extr)
        if on_progress:
            on_progress((i + 1) / len(views), "fusion")
    mesh = vol.extract_triangle_mesh()
    if len(mesh.triangles) == 0:
        raise MVSError("empty_mesh", "depth fusion produced no surface")
    return mesh
