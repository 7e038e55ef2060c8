"""A synthetic capture with ground truth, for tests and benchmarks of the dense pipeline.

A closed "blob" (a sphere with low-frequency radial bumps) carries a procedural colour pattern
(a sum of random 3D sinusoids, rich in texture at every scale a patch matcher uses). It is
ray-cast (Open3D ``RaycastingScene``) from cameras on rings around a known up axis, with 2x2
supersampling, over a uniform background. The scene can be rotated by an arbitrary rotation,
so code that infers "up" from cameras has something to find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from arforge.photogrammetry.meshing import Mesh
from arforge.photogrammetry.mvs import View
from arforge.photogrammetry.preview import look_at
from arforge.photogrammetry.texture import _scene


@dataclass
class SyntheticScene:
    """``mesh``: the true surface (world frame); ``views``: rendered undistorted views whose
    ``points``/``point_ids`` are the mesh vertices each view sees (stand-ins for SfM points);
    ``depths``: true depth maps (0 = background); ``up``: the true up axis (3,)."""

    mesh: Mesh
    views: list[View]
    depths: list[np.ndarray]
    up: np.ndarray


class Pattern:
    """Procedural RGB colour ``f(X)`` for world points X (N, 3) -> (N, 3) uint8."""

    def __init__(self, seed: int = 0, terms: int = 24, fmin: float = 20.0, fmax: float = 90.0):
        rng = np.random.default_rng(seed)
        d = rng.normal(size=(terms, 3))
        self.dirs = d / np.linalg.norm(d, axis=1, keepdims=True)
        self.freq = rng.uniform(fmin, fmax, terms)
        self.phase = rng.uniform(0, 2 * np.pi, terms)
        self.tint = rng.uniform(0.3, 1.0, (terms, 3))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        s = np.sin((X @ self.dirs.T) * self.freq + self.phase)  # (N, terms)
        g = (s @ self.tint) / np.sqrt(len(self.freq))
        return np.clip(128 + 90 * g, 0, 255).astype(np.uint8)


def blob_mesh(radius: float = 1.0, resolution: int = 60, bump: float = 0.12) -> Mesh:
    """A closed, star-shaped surface (sphere with bumps), outward-facing, in its own frame."""
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=resolution)
    v = np.asarray(m.vertices)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    r = radius * (
        1 + bump * np.sin(3 * u[:, 0] + 1) * np.cos(2 * u[:, 1]) + 0.5 * bump * u[:, 2] ** 2
    )
    return Mesh(u * r[:, None], np.asarray(m.triangles).astype(np.int64))


def orbit(
    n: int,
    elevations_deg: tuple[float, ...] = (15.0, 45.0),
    distance: float = 4.0,
    size: tuple[int, int] = (320, 240),
    fov_deg: float = 40.0,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Cameras (K, R, t) looking at the origin from rings at the given elevations about +Y,
    ``n`` per ring, images upright (+Y up)."""
    w, h = size
    f = 0.5 * w / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    cams = []
    for ri, el in enumerate(elevations_deg):
        for i in range(n):
            az = 2 * math.pi * (i + 0.5 * ri) / n
            e = math.radians(el)
            eye = distance * np.array(
                [math.cos(e) * math.sin(az), math.sin(e), math.cos(e) * math.cos(az)]
            )
            R, t = look_at(eye, np.zeros(3))
            cams.append((K.copy(), R, t))
    return cams


def make_scene(
    n_per_ring: int = 8,
    elevations_deg: tuple[float, ...] = (15.0, 45.0),
    size: tuple[int, int] = (320, 240),
    rotation: np.ndarray | None = None,
    seed: int = 0,
    background: int = 70,
    pattern: Pattern | None = None,
) -> SyntheticScene:
    """Render the blob from an orbit; ``rotation`` (3x3) is applied to the whole scene
    (surface and cameras), so the true up becomes ``rotation @ [0, 1, 0]``. ``pattern``: the
    surface colour (default ``Pattern(seed)``), evaluated in the unrotated frame."""
    import open3d as o3d

    Q = np.eye(3) if rotation is None else np.asarray(rotation, float)
    mesh0 = blob_mesh()
    mesh = Mesh(mesh0.vertices @ Q.T, mesh0.faces)
    pattern = pattern or Pattern(seed)
    scene = _scene(mesh.vertices, mesh.faces)
    views: list[View] = []
    depths: list[np.ndarray] = []
    w, h = size
    for K, R0, t0 in orbit(n_per_ring, elevations_deg, size=size):
        R = R0 @ Q.T  # x_cam = R0 (Q^T X) + t0
        t = t0
        # 2x supersampled render
        K2 = K.copy()
        K2[:2] *= 2
        K2[0, 2] = (K[0, 2] + 0.5) * 2 - 0.5
        K2[1, 2] = (K[1, 2] + 0.5) * 2 - 0.5
        u, v = np.meshgrid(np.arange(2 * w, dtype=np.float64), np.arange(2 * h, dtype=np.float64))
        d = (np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K2).T) @ R
        c = -R.T @ t
        rays = np.concatenate([np.broadcast_to(c, d.shape), d], -1).astype(np.float32)
        th = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)))["t_hit"].numpy()
        hit = np.isfinite(th)
        img: np.ndarray = np.full((2 * h, 2 * w, 3), background, np.uint8)
        X = c + d[hit] * th[hit][:, None]
        img[hit] = pattern(X @ Q)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        # true depth at the final resolution (camera z; 0 for background)
        u1, v1 = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        d1 = (np.stack([u1, v1, np.ones_like(u1)], -1) @ np.linalg.inv(K).T) @ R
        rays1 = np.concatenate([np.broadcast_to(c, d1.shape), d1], -1).astype(np.float32)
        z = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays1)))["t_hit"].numpy()
        z = np.where(np.isfinite(z), z, 0).astype(np.float32)
        view = View(name=f"{len(views) + 1:06d}.png", image=img, K=K, R=R, t=t)
        uv, vz = view.project(mesh.vertices)
        ui, vi = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
        ok = (vz > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        ok[ok] &= np.abs(z[vi[ok], ui[ok]] - vz[ok]) < 0.02 * vz[ok]
        ids = np.nonzero(ok)[0][::7]
        view.points, view.point_ids = mesh.vertices[ids], ids.astype(np.int64)
        views.append(view)
        depths.append(z)
    return SyntheticScene(mesh=mesh, views=views, depths=depths, up=Q @ np.array([0.0, 1.0, 0.0]))


def chamfer(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean nearest-neighbour distances (a -> b accuracy, b -> a completeness) between point
    sets (N, 3) and (M, 3)."""
    from scipy.spatial import cKDTree

    return float(cKDTree(b).query(a)[0].mean()), float(cKDTree(a).query(b)[0].mean())


def sample_surface(mesh: Mesh, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points uniformly distributed over the surface area of ``mesh``, (n, 3)."""
    rng = np.random.default_rng(seed)
    v = mesh.vertices[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    f = rng.choice(len(area), n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], -1)
    return np.einsum("nk,nkd->nd", w, v[f])
