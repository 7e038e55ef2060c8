"""UV unwrapping (xatlas) and texture baking from the registered photos.

Baking, in the spirit of view-selection texturing (Lempitsky & Ivanov, "Seamless mosaicing of
image-based texture maps", CVPR 2007; Waechter, Moehrle & Goesele, "Let there be color!",
ECCV 2014) but with soft blending instead of a graph cut:

1. Each view gets a z-buffer of the mesh by ray casting (Open3D ``RaycastingScene``, Embree).
2. Per face and view, a score ``cos^2(angle) * (f / z)^2`` (projected pixel density, favouring
   frontal views) when the face centroid is in frame and passes the z-buffer test.
3. The ``top_views`` best views of each face are blended per texel with weights
   ``(score / best)^4``; each texel is depth-tested again in each view, so partly occluded
   faces take colour only where visible.
4. Gutters around charts are filled by iterative dilation so bilinear filtering and mip-maps do
   not bleed the background; texels no view sees get the neighbouring colour.

UV convention: ``uvs`` in [0, 1] with v growing downwards (row = v * size), i.e. glTF's
convention; USD's ``st`` is ``(u, 1 - v)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from arforge.photogrammetry.meshing import Mesh
from arforge.photogrammetry.mvs import View

ProgressFn = Callable[[float, str], None]
_INVALID = np.uint32(0xFFFFFFFF)


@dataclass
class TexturedMesh:
    """Mesh with per-vertex ``uvs`` (N, 2) float32 and an RGB ``texture`` (S, S, 3) uint8;
    ``coverage`` is the share of texels inside triangles that received a photo colour."""

    mesh: Mesh
    uvs: np.ndarray
    texture: np.ndarray
    coverage: float


def unwrap(mesh: Mesh, texture_size: int = 2048, padding: int = 4) -> tuple[Mesh, np.ndarray]:
    """Chart and pack the mesh with xatlas (Young, "xatlas", a fork of thekla_atlas).

    Returns the mesh with vertices split along seams (colours carried over) and UVs (N, 2) in
    [0, 1]. xatlas is slow on noisy dense meshes: clean and decimate first.
    """
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(
        np.ascontiguousarray(mesh.vertices, dtype=np.float32),
        np.ascontiguousarray(mesh.faces, dtype=np.uint32),
    )
    chart = xatlas.ChartOptions()
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)
    pack.padding = int(padding)
    pack.bilinear = True
    pack.rotate_charts = True
    atlas.generate(chart, pack)
    vmapping, indices, uvs = atlas[0]
    vmapping = np.asarray(vmapping, dtype=np.int64)
    cols = mesh.colors[vmapping] if mesh.colors is not None else None
    out = Mesh(mesh.vertices[vmapping], np.asarray(indices, dtype=np.int64), cols)
    return out, np.asarray(uvs, dtype=np.float32)


def _scene(vertices: np.ndarray, faces: np.ndarray):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
    )
    return scene


def rasterize_atlas(mesh: Mesh, uvs: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which face covers each texel centre: ``face`` (S, S) int64 (-1 none) and barycentric
    weights (S, S, 3) float32 (w0, w1, w2 of the face's corners)."""
    import open3d as o3d

    flat = np.zeros((len(uvs), 3), np.float32)
    flat[:, :2] = uvs * size
    scene = _scene(flat, mesh.faces)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    rays = np.zeros((size, size, 6), np.float32)
    rays[..., 0], rays[..., 1], rays[..., 2] = xs, ys, 1.0
    rays[..., 5] = -1.0
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    ids = hit["primitive_ids"].numpy()
    b = hit["primitive_uvs"].numpy()
    face = np.where(ids == _INVALID, -1, ids.astype(np.int64))
    bary = np.stack([1 - b[..., 0] - b[..., 1], b[..., 0], b[..., 1]], -1).astype(np.float32)
    return face, bary


def zbuffer(scene, view: View, max_side: int = 800) -> tuple[np.ndarray, np.ndarray]:
    """Depth (camera z) of the first surface hit per pixel of ``view`` rendered at a long side
    of at most ``max_side`` px: returns (depth (h, w) float32, inf for no hit; its 3x3 K)."""
    import open3d as o3d

    w, h = view.size
    s = min(1.0, max_side / max(w, h))
    zw, zh = max(1, round(w * s)), max(1, round(h * s))
    K = view.K.copy()
    K[0, 0] *= zw / w
    K[1, 1] *= zh / h
    K[0, 2] = (K[0, 2] + 0.5) * zw / w - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * zh / h - 0.5
    u, v = np.meshgrid(np.arange(zw, dtype=np.float64), np.arange(zh, dtype=np.float64))
    d = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # camera z = 1
    d = d @ view.R  # to world, z-component scale preserved along the ray
    rays = np.concatenate([np.broadcast_to(view.center, d.shape), d], -1).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)))["t_hit"].numpy()
    return t.astype(np.float32), K


def _bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample HxWxC uint8 image at float pixel coords (N, 2) -> (N, C) float32."""
    h, w = img.shape[:2]
    x = np.clip(uv[:, 0], 0, w - 1.001)
    y = np.clip(uv[:, 1], 0, h - 1.001)
    x0 = x.astype(np.int64)
    y0 = y.astype(np.int64)
    fx = (x - x0)[:, None].astype(np.float32)
    fy = (y - y0)[:, None].astype(np.float32)
    a = img[y0, x0].astype(np.float32)
    b = img[y0, x0 + 1].astype(np.float32)
    c = img[y0 + 1, x0].astype(np.float32)
    d = img[y0 + 1, x0 + 1].astype(np.float32)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _visible(zbuf: np.ndarray, Kz: np.ndarray, view: View, X: np.ndarray, cos: np.ndarray):
    """In-frame and z-buffer test for world points X (N, 3) in ``view``; returns (mask, uv in
    the view's image, depth)."""
    uv, z = view.project(X)
    w, h = view.size
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
    zh, zw = zbuf.shape
    zx = np.clip(np.rint((uv[:, 0] + 0.5) * zw / w - 0.5), 0, zw - 1).astype(np.int64)
    zy = np.clip(np.rint((uv[:, 1] + 0.5) * zh / h - 0.5), 0, zh - 1).astype(np.int64)
    zb = zbuf[zy, zx]
    pix = z / Kz[0, 0]  # world size of one z-buffer pixel at that depth
    tol = 0.005 * z + 3.0 * pix / np.maximum(cos, 0.2)
    ok = inside & (z <= zb + tol)
    return ok, uv, z


def face_view_scores(
    mesh: Mesh, views: Sequence[View], zbufs: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Score (F, V) float32 of each view for each face: ``cos^2 * (f / z)^2`` where visible,
    else 0."""
    cent = mesh.vertices[mesh.faces].mean(1)
    normals = mesh.face_normals()
    S = np.zeros((len(mesh.faces), len(views)), np.float32)
    for j, (v, (zb, Kz)) in enumerate(zip(views, zbufs, strict=True)):
        dirs = v.center - cent
        dist = np.linalg.norm(dirs, axis=1)
        cos = np.einsum("ij,ij->i", normals, dirs) / np.maximum(dist, 1e-12)
        ok, _, z = _visible(zb, Kz, v, cent, cos)
        ok &= cos > 0.1
        S[ok, j] = (cos[ok] ** 2) * (v.K[0, 0] / z[ok]) ** 2
    return S


def fill_gutters(texture: np.ndarray, mask: np.ndarray, iterations: int = 16) -> np.ndarray:
    """Grow coloured texels (``mask`` True) outwards by ``iterations`` pixels with a masked
    3x3 average, then paint the rest with the mean colour."""
    img = texture.astype(np.float32) * mask[..., None]
    m = mask.astype(np.float32)
    for _ in range(iterations):
        if m.min() > 0:
            break
        s = cv2.boxFilter(img, -1, (3, 3), normalize=False)
        c = cv2.boxFilter(m, -1, (3, 3), normalize=False)
        grow = (m == 0) & (c > 0)
        img[grow] = s[grow] / c[grow][:, None]
        m[grow] = 1.0
    if (m == 0).any():
        mean = img[m > 0].mean(0) if (m > 0).any() else np.array([128.0, 128.0, 128.0])
        img[m == 0] = mean
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def bake_texture(
    mesh: Mesh,
    uvs: np.ndarray,
    views: Sequence[View],
    size: int = 2048,
    top_views: int = 3,
    on_progress: ProgressFn | None = None,
) -> TexturedMesh:
    """Bake an RGB texture (size x size) for ``mesh`` with ``uvs`` from the undistorted
    ``views`` (any resolution; the same world frame as the mesh). See the module docstring."""
    scene = _scene(mesh.vertices, mesh.faces)
    zbufs = [zbuffer(scene, v) for v in views]
    if on_progress:
        on_progress(0.2, "texture")
    S = face_view_scores(mesh, views, zbufs)
    face, bary = rasterize_atlas(mesh, uvs, size)
    inside = face >= 0
    tex_face = face[inside]
    b = bary[inside]
    corners = mesh.vertices[mesh.faces[tex_face]]  # (T, 3, 3)
    X = np.einsum("tk,tkd->td", b.astype(np.float64), corners)
    normals = mesh.face_normals()[tex_face]

    # top-k views per face, weights relative to the face's best
    k = max(1, min(top_views, len(views)))
    top = np.argsort(-S, axis=1)[:, :k]
    topw = np.take_along_axis(S, top, 1)
    best = np.maximum(topw[:, :1], 1e-30)
    wface = np.where(topw > 0, (topw / best) ** 4, 0.0).astype(np.float32)
    W = np.zeros_like(S)
    np.put_along_axis(W, top, wface, 1)

    acc = np.zeros((len(X), 3), np.float32)
    wsum = np.zeros(len(X), np.float32)
    for j, (v, (zb, Kz)) in enumerate(zip(views, zbufs, strict=True)):
        wt = W[tex_face, j]
        sel = np.nonzero(wt > 0)[0]
        if len(sel):
            dirs = v.center - X[sel]
            cos = np.einsum("ij,ij->i", normals[sel], dirs) / np.linalg.norm(dirs, axis=1)
            ok, uv, _ = _visible(zb, Kz, v, X[sel], cos)
            sel, uv = sel[ok], uv[ok]
            acc[sel] += _bilinear(v.image, uv) * wt[sel, None]
            wsum[sel] += wt[sel]
        if on_progress:
            on_progress(0.3 + 0.7 * (j + 1) / len(views), "texture")
    got = wsum > 0
    coverage = float(got.mean()) if len(got) else 0.0
    tex = np.zeros((size, size, 3), np.float32)
    mask = np.zeros((size, size), bool)
    ys, xs = np.nonzero(inside)
    tex[ys[got], xs[got]] = acc[got] / wsum[got, None]
    mask[ys[got], xs[got]] = True
    texture = fill_gutters(tex, mask, iterations=max(16, size // 64))
    return TexturedMesh(mesh=mesh, uvs=uvs, texture=texture, coverage=coverage)
