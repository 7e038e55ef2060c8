"""Mesh clean-up, hole filling, Y-up orientation, ground placement and decimation.

* Object isolation: faces far from the cameras' focus point are dropped, then connected
  components are ranked by area; the largest is kept with any other component at least
  ``keep_ratio`` of its area (floaters are small by comparison).
* Hole filling: Open3D's ``fill_holes`` (a port of VTK's vtkFillHolesFilter) for holes whose
  bounding radius is below a fraction of the object size.
* Orientation: +Y is the cameras' average up vector (COLMAP cameras look down +z with +y
  pointing down in the image, so a camera's world up is ``-R[1]``); +Z points from the object
  towards the first camera projected on the ground plane, so the model faces the first photo.
* Decimation: quadric error metric edge collapse (Garland & Heckbert, "Surface simplification
  using quadric error metrics", SIGGRAPH 1997) via Open3D.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from arforge.photogrammetry.mvs import View

if TYPE_CHECKING:
    from arforge.photogrammetry.fusion import Plane


@dataclass
class Mesh:
    """Triangle mesh: ``vertices`` (N, 3) float64, ``faces`` (M, 3) int64 (counter-clockwise
    = outward), optional ``colors`` (N, 3) uint8 per vertex."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3): min and max corner."""
        return np.stack([self.vertices.min(0), self.vertices.max(0)])

    def face_normals(self) -> np.ndarray:
        """Unit face normals (M, 3)."""
        v = self.vertices[self.faces]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)

    def vertex_normals(self) -> np.ndarray:
        """Area-weighted unit vertex normals (N, 3)."""
        v = self.vertices[self.faces]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        out = np.zeros_like(self.vertices)
        for k in range(3):
            np.add.at(out, self.faces[:, k], n)
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.where(norm > 1e-20, out / np.maximum(norm, 1e-20), [0.0, 1.0, 0.0])
        return out

    def area(self) -> float:
        v = self.vertices[self.faces]
        return float(
            0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum()
        )


def from_open3d(m) -> Mesh:
    """``open3d.geometry.TriangleMesh`` -> :class:`Mesh` (vertex colours kept if present)."""
    cols = None
    if m.has_vertex_colors():
        cols = np.clip(np.asarray(m.vertex_colors) * 255 + 0.5, 0, 255).astype(np.uint8)
    return Mesh(np.asarray(m.vertices).copy(), np.asarray(m.triangles).astype(np.int64), cols)


def to_open3d(mesh: Mesh):
    """:class:`Mesh` -> ``open3d.geometry.TriangleMesh``."""
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.ascontiguousarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.ascontiguousarray(mesh.faces, dtype=np.int32)),
    )
    if mesh.colors is not None:
        m.vertex_colors = o3d.utility.Vector3dVector(mesh.colors.astype(np.float64) / 255.0)
    return m


def _compact(mesh: Mesh, keep_faces: np.ndarray) -> Mesh:
    faces = mesh.faces[keep_faces]
    used = np.unique(faces)
    remap = np.full(len(mesh.vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    cols = mesh.colors[used] if mesh.colors is not None else None
    return Mesh(mesh.vertices[used], remap[faces], cols)


def isolate_object(
    mesh: Mesh,
    focus: np.ndarray,
    radius: float,
    keep_ratio: float = 0.1,
    planes: Sequence[Plane] = (),
) -> Mesh:
    """Drop faces whose centroid is farther than ``radius`` from ``focus`` or on / behind a
    background plane (``planes``, see :func:`fusion.background_planes`), then keep the
    largest connected component (by area) and components with >= ``keep_ratio`` of its area.

    Raises ValueError when nothing is left.
    """
    m = to_open3d(mesh)
    m.remove_duplicated_vertices()
    m.remove_degenerate_triangles()
    m.remove_unreferenced_vertices()
    mesh = from_open3d(m)
    cent = mesh.vertices[mesh.faces].mean(1)
    near = np.linalg.norm(cent - focus, axis=1) <= radius
    for pl in planes:
        near &= pl.height(cent) > pl.cut
    if not near.any():
        raise ValueError("no surface near the cameras' focus point")
    mesh = _compact(mesh, near)
    m = to_open3d(mesh)
    labels, _, _ = m.cluster_connected_triangles()
    labels = np.asarray(labels)
    v = mesh.vertices[mesh.faces]
    fa = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    areas = np.bincount(labels, weights=fa)
    keep_labels = np.nonzero(areas >= keep_ratio * areas.max())[0]
    return _compact(mesh, np.isin(labels, keep_labels))


def fill_small_holes(mesh: Mesh, max_radius: float) -> Mesh:
    """Close boundary loops whose bounding-sphere radius is below ``max_radius`` (world units)
    with Open3D's ``fill_holes``; vertex colours of new faces come from their neighbours."""
    import open3d as o3d

    t = o3d.t.geometry.TriangleMesh.from_legacy(to_open3d(mesh))
    filled = t.fill_holes(hole_size=float(max_radius)).to_legacy()
    out = from_open3d(filled)
    if out.faces.shape[0] < mesh.faces.shape[0]:  # never lose surface
        return mesh
    if mesh.colors is not None and (out.colors is None or len(out.colors) != len(out.vertices)):
        out.colors = None
    return out


def decimate(mesh: Mesh, target_faces: int) -> Mesh:
    """Quadric-error edge collapse down to at most ``target_faces`` triangles (no-op when the
    mesh is already smaller). Vertex colours are interpolated by Open3D."""
    if len(mesh.faces) <= target_faces:
        return mesh
    m = to_open3d(mesh).simplify_quadric_decimation(target_number_of_triangles=int(target_faces))
    m.remove_degenerate_triangles()
    m.remove_unreferenced_vertices()
    return from_open3d(m)


def up_frame(views: Sequence[View], center: np.ndarray) -> np.ndarray:
    """Rotation (3, 3) taking world (SfM) coordinates to the model frame: rows are the model's
    X, Y, Z axes. Y = normalised mean of the cameras' up vectors (``-R[1]``); Z = direction from
    ``center`` to the first camera, projected perpendicular to Y; X = Y x Z."""
    up = -np.mean([v.R[1] for v in views], axis=0)
    if np.linalg.norm(up) < 1e-9:
        up = np.array([0.0, 1.0, 0.0])
    y = up / np.linalg.norm(up)
    z = None
    for v in views:
        d = v.center - center
        d = d - (d @ y) * y
        if np.linalg.norm(d) > 1e-9:
            z = d / np.linalg.norm(d)
            break
    if z is None:
        tmp = np.array([1.0, 0.0, 0.0]) if abs(y[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
        z = np.cross(tmp, y)
        z /= np.linalg.norm(z)
    x = np.cross(y, z)
    return np.stack([x, y, z])


def placement(mesh: Mesh, rotation: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """4x4 similarity: rotate by ``rotation``, scale, then translate so the lowest vertex is
    at y = 0 and the bounding box is centred on x = z = 0 (the object stands on the ground)."""
    p = mesh.vertices @ rotation.T * scale
    lo, hi = p.min(0), p.max(0)
    T = np.eye(4)
    T[:3, :3] = rotation * scale
    T[:3, 3] = [-(lo[0] + hi[0]) / 2, -lo[1], -(lo[2] + hi[2]) / 2]
    return T


def transform(mesh: Mesh, T: np.ndarray) -> Mesh:
    """Apply a 4x4 similarity to the vertices (face winding kept: det > 0 assumed)."""
    return replace(mesh, vertices=mesh.vertices @ T[:3, :3].T + T[:3, 3])
