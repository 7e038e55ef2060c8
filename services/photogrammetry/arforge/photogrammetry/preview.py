"""Preview rendering of a textured mesh from a three-quarter view, by ray casting.

Primary rays go through each pixel of a pinhole camera (Open3D ``RaycastingScene``, Embree);
the hit's barycentric coordinates interpolate the UVs and vertex normals; the texture is
sampled bilinearly and shaded with a Lambert key light plus ambient. No GPU or display needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from arforge.photogrammetry.texture import TexturedMesh, _bilinear, _scene

_INVALID = np.uint32(0xFFFFFFFF)


def look_at(
    eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) for a camera at ``eye`` looking at ``target`` (OpenCV axes:
    +z forward, +y down in the image)."""
    f = target - eye
    f = f / np.linalg.norm(f)
    r = np.cross(f, np.asarray(up, float))
    if np.linalg.norm(r) < 1e-9:
        r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)  # image down
    R = np.stack([r, d, f])
    return R, -R @ eye


def render(
    tm: TexturedMesh,
    width: int = 800,
    height: int = 600,
    azimuth_deg: float = 35.0,
    elevation_deg: float = 25.0,
    fov_deg: float = 35.0,
) -> np.ndarray:
    """Render ``tm`` (Y-up model frame) to an RGB uint8 image (height, width, 3).

    The camera orbits the bounding-box centre at ``azimuth_deg`` from +Z towards +X and
    ``elevation_deg`` above the horizon, far enough for the bounding sphere to fit.
    """
    import open3d as o3d

    mesh = tm.mesh
    lo, hi = mesh.bounds
    center = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-9)
    f = 0.5 * min(width, height) / math.tan(math.radians(fov_deg) / 2)
    dist = radius / math.sin(math.radians(fov_deg) / 2) * 1.05
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    eye = center + dist * np.array(
        [math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]
    )
    R, _ = look_at(eye, center)
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d = (np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T) @ R
    rays = np.concatenate([np.broadcast_to(eye, d.shape), d], -1).astype(np.float32)
    hit = _scene(mesh.vertices, mesh.faces).cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)))
    ids = hit["primitive_ids"].numpy()
    bc = hit["primitive_uvs"].numpy()

    # background: soft vertical gradient
    g = np.linspace(235, 200, height, dtype=np.float32)[:, None, None]
    out = np.broadcast_to(g, (height, width, 3)).copy()
    m = ids != _INVALID
    if m.any():
        fid = ids[m].astype(np.int64)
        b = np.stack([1 - bc[m][:, 0] - bc[m][:, 1], bc[m][:, 0], bc[m][:, 1]], -1)
        tri = mesh.faces[fid]
        uv = np.einsum("nk,nkd->nd", b, tm.uvs[tri].astype(np.float64))
        size = tm.texture.shape[0]
        color = _bilinear(tm.texture, uv * size - 0.5)
        vn = mesh.vertex_normals()
        n = np.einsum("nk,nkd->nd", b, vn[tri])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        view_dir = -d[m] / np.linalg.norm(d[m], axis=1, keepdims=True)
        n = np.where((np.einsum("nd,nd->n", n, view_dir) < 0)[:, None], -n, n)  # two-sided
        light = np.array([0.4, 0.8, 0.6])
        light = light / np.linalg.norm(light)
        shade = 0.55 + 0.45 * np.clip(n @ light, 0, 1)
        out[m] = color * shade[:, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def write_preview(tm: TexturedMesh, path: Path | str, width: int = 800, height: int = 600) -> Path:
    """Render a three-quarter view of ``tm`` and save it as PNG at ``path``."""
    path = Path(path)
    Image.fromarray(render(tm, width, height)).save(path, format="PNG", optimize=True)
    return path
