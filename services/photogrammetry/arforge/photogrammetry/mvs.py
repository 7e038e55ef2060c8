"""CPU multi-view stereo: plane-sweep depth maps with a geometric consistency filter.

Method
------
* Depth hypotheses are fronto-parallel planes of the reference camera, sampled uniformly in
  inverse depth between bounds taken from the SfM points the view sees. Each source image is
  warped onto the reference image through the plane-induced homography
  ``H = K_s (R + t n^T / d) K_r^-1`` (Collins, "A space-sweep approach to true multi-image
  matching", CVPR 1996; Gallup et al., "Real-time plane-sweeping stereo with multiple sweeping
  directions", CVPR 2007).
* Photo-consistency is zero-mean normalised cross-correlation (ZNCC) over a square patch,
  computed for all pixels at once with box filters; per depth the best ``k`` source scores are
  averaged, which tolerates occlusion in the other sources (Kang, Szeliski & Chai, CVPR 2001).
* Winner-take-all per pixel, refined to sub-plane precision by a parabola through the scores of
  the neighbouring planes; the score is the confidence.
* Geometric consistency across views as in COLMAP (Schönberger et al., "Pixelwise view
  selection for unstructured multi-view stereo", ECCV 2016): a depth survives when it
  reprojects into at least ``min_consistent`` neighbouring depth maps and back within one pixel
  and one percent of depth.

Conventions: world-to-camera ``x_cam = R @ X + t``; intrinsics ``K`` in pixels with the centre
of pixel (0, 0) at (0, 0) (OpenCV convention; COLMAP's principal point is shifted by 0.5 on
load). Depth is the camera-frame z in SfM units; 0 means "no depth".
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from arforge.shared.errors import JobFailed

ProgressFn = Callable[[float, str], None]
_F32 = npt.NDArray[np.float32]


class MVSError(JobFailed):
    """Dense reconstruction cannot proceed; ``code`` is machine-readable. A ``JobFailed``, so
    the job ends with that code instead of being retried."""


@dataclass
class View:
    """One registered, undistorted photo.

    ``image``: HxWx3 uint8 RGB; ``K``: 3x3 intrinsics for that image; ``R`` (3x3), ``t`` (3,):
    world-to-camera; ``points``: (N, 3) float64 SfM points this view observes (world frame);
    ``point_ids``: (N,) int64 their SfM ids (used to rank neighbouring views).
    """

    name: str
    image: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, (3,)."""
        return -self.R.T @ self.t

    @property
    def axis(self) -> np.ndarray:
        """Unit viewing direction (camera +z) in world coordinates, (3,)."""
        return self.R[2].copy()

    def scaled(self, max_side: int) -> View:
        """This view resized (area interpolation) so its long side is at most ``max_side`` px."""
        w, h = self.size
        s = min(1.0, max_side / max(w, h))
        if s >= 1.0:
            return self
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        sx, sy = nw / w, nh / h
        img = cv2.resize(self.image, (nw, nh), interpolation=cv2.INTER_AREA)
        K = self.K.copy()
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return replace(self, image=img, K=K)

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) and camera depths (N,)."""
        xc = X @ self.R.T + self.t
        z = xc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (xc[:, :2] / z[:, None]) @ self.K[:2, :2].T + self.K[:2, 2]
        return uv, z

    def backproject(self, depth: np.ndarray) -> np.ndarray:
        """Depth map (H, W) -> world points (H, W, 3) (invalid where depth is 0)."""
        h, w = depth.shape
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        Kinv = np.linalg.inv(self.K)
        rays = np.stack([u, v, np.ones_like(u)], -1) @ Kinv.T
        xc = rays * depth[..., None]
        return (xc - self.t) @ self.R


@dataclass
class DepthMap:
    """Per-view result: ``depth`` (H, W) float32 (0 = none), ``confidence`` (H, W) float32 ZNCC."""

    depth: np.ndarray
    confidence: np.ndarray

    @property
    def valid_ratio(self) -> float:
        return float((self.depth > 0).mean())


@dataclass(frozen=True)
class MVSParams:
    """Plane-sweep settings. ``max_side``: long side (px) of the images matched; ``num_planes``:
    depth hypotheses; ``patch``: ZNCC window (odd, px); ``num_neighbors``: source views per
    reference; ``top_k``: best source scores averaged; ``min_score``: minimum aggregated ZNCC;
    ``min_texture``: minimum patch intensity std (0..1 scale) for a pixel to be matched;
    ``min_consistent``: neighbouring depth maps that must agree; ``min_angle_deg`` /
    ``max_angle_deg``: triangulation angle window preferred for neighbours."""

    max_side: int = 512
    num_planes: int = 96
    patch: int = 7
    num_neighbors: int = 5
    top_k: int = 2
    min_score: float = 0.5
    min_texture: float = 0.01
    min_consistent: int = 2
    min_angle_deg: float = 3.0
    max_angle_deg: float = 45.0


QUALITY_PRESETS: dict[str, MVSParams] = {
    "low": MVSParams(max_side=384, num_planes=64, patch=5, num_neighbors=4),
    "medium": MVSParams(),
    "high": MVSParams(max_side=768, num_planes=128, patch=9, num_neighbors=6),
}


# --------------------------------------------------------------------------- loading


def _undistort_maps(camera, K: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Remap tables from an ideal pinhole image (intrinsics K, OpenCV pixel convention) to the
    distorted photo, using pycolmap's own camera model (any COLMAP model)."""
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    pts = np.stack([x.ravel(), y.ravel(), np.ones(x.size)], -1)
    img = np.asarray(camera.img_from_cam(pts), dtype=np.float64)  # COLMAP pixel convention
    mx = (img[:, 0] - 0.5).reshape(h, w).astype(np.float32)
    my = (img[:, 1] - 0.5).reshape(h, w).astype(np.float32)
    return mx, my


def load_views(sparse_dir: Path | str, image_dir: Path | str, max_side: int = 1600) -> list[View]:
    """Read a COLMAP sparse model (``pycolmap.Reconstruction``) and its photos as undistorted
    :class:`View` objects, resized to a long side of at most ``max_side`` px.

    Images are looked up as ``image_dir / image.name``; missing files and unregistered images
    are skipped. Raises :class:`MVSError` ``sparse_model_unreadable`` when ``sparse_dir`` holds
    no COLMAP model and ``no_registered_views`` when no usable view remains.
    """
    import pycolmap  # heavy import only where needed

    sparse = Path(sparse_dir)
    if not any((sparse / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
        raise MVSError("sparse_model_unreadable", f"no COLMAP sparse model in {sparse}")
    try:
        rec = pycolmap.Reconstruction(str(sparse))
    except Exception as exc:  # pycolmap raises assorted errors on damaged files
        raise MVSError("sparse_model_unreadable", f"cannot read the sparse model: {exc}") from exc
    xyz = {pid: p.xyz for pid, p in rec.points3D.items()}
    maps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    views: list[View] = []
    for image_id in sorted(rec.images):
        im = rec.images[image_id]
        if not im.has_pose:
            continue
        path = Path(image_dir) / im.name
        if not path.exists():
            continue
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        cam = rec.cameras[im.camera_id]
        if bgr.shape[1] != cam.width or bgr.shape[0] != cam.height:
            bgr = cv2.resize(bgr, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
        if im.camera_id not in maps:
            K = np.asarray(cam.calibration_matrix(), dtype=np.float64).copy()
            K[0, 1] = 0.0
            K[0, 2] -= 0.5
            K[1, 2] -= 0.5
            mx, my = _undistort_maps(cam, K, cam.width, cam.height)
            maps[im.camera_id] = (K, mx, my)
        K, mx, my = maps[im.camera_id]
        und = cv2.remap(bgr, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        pose = im.cam_from_world()
        ids = np.array([p.point3D_id for p in im.points2D if p.has_point3D()], dtype=np.int64)
        pts = np.array([xyz[i] for i in ids], dtype=np.float64).reshape(-1, 3)
        view = View(
            name=im.name,
            image=cv2.cvtColor(und, cv2.COLOR_BGR2RGB),
            K=K.copy(),
            R=np.asarray(pose.rotation.matrix(), dtype=np.float64),
            t=np.asarray(pose.translation, dtype=np.float64),
            points=pts,
            point_ids=ids,
        )
        views.append(view.scaled(max_side))
    if not views:
        raise MVSError("no_registered_views", f"no registered images with files in {image_dir}")
    return views


# --------------------------------------------------------------------------- view selection


def focus_point(views: Sequence[View]) -> np.ndarray:
    """The point closest (least squares) to all optical axes: where the cameras look, (3,)."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for v in views:
        d = v.axis
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ v.center
    if len(views) < 2 or np.linalg.cond(A) > 1e8:
        return np.mean(
            [
                v.center + v.axis * np.median(v.project(v.points)[1]) if len(v.points) else v.center
                for v in views
            ],
            axis=0,
        )
    return np.linalg.solve(A, b)


def select_neighbors(views: Sequence[View], params: MVSParams) -> list[list[int]]:
    """For each view, the indices of up to ``params.num_neighbors`` source views.

    Score = number of shared SfM points, down-weighted outside the triangulation angle window
    [min_angle_deg, max_angle_deg] (angle at the sparse points' median between the centres),
    as in COLMAP's view selection heuristic. Without shared points, the nearest cameras by
    viewing-direction angle are used.
    """
    n = len(views)
    sets = [set(v.point_ids.tolist()) for v in views]
    out: list[list[int]] = []
    for i, vi in enumerate(views):
        target = np.median(vi.points, axis=0) if len(vi.points) else focus_point(views)
        scores = []
        for j, vj in enumerate(views):
            if j == i:
                continue
            a = vi.center - target
            b = vj.center - target
            cosang = a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
            ang = math.degrees(math.acos(float(np.clip(cosang, -1, 1))))
            shared = len(sets[i] & sets[j])
            w = 1.0
            if ang < params.min_angle_deg:
                w = (ang / params.min_angle_deg) ** 2
            elif ang > params.max_angle_deg:
                w = max(0.0, 1.0 - (ang - params.max_angle_deg) / 30.0) ** 2
            score = shared * w if shared else 1e-3 * max(0.0, 1.0 - ang / 90.0)
            scores.append((score, j))
        scores.sort(reverse=True)
        out.append([j for s, j in scores[: params.num_neighbors] if s > 0])
        if not out[-1] and n > 1:
            out[-1] = [scores[0][1]]
    return out


def depth_bounds(view: View, margin: float = 0.25) -> tuple[float, float] | None:
    """(near, far) camera depths covering the view's SfM points (2nd-98th percentile), widened
    by ``margin`` of the span on both sides; None without points in front of the camera."""
    if len(view.points) < 3:
        return None
    _, z = view.project(view.points)
    z = z[z > 0]
    if len(z) < 3:
        return None
    lo, hi = np.percentile(z, [2, 98])
    span = max(hi - lo, 0.05 * hi)
    return max(1e-6, lo - margin * span), hi + margin * span


# --------------------------------------------------------------------------- plane sweep


_OUTSIDE = -4.0  # warp border value; real intensities are in [0, 1]
_FINE_RADIUS = 4  # fine hypotheses on each side of the coarse estimate, in fine steps


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def _half(gray: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-resolution image (area interpolation) and its intrinsics."""
    h, w = gray.shape
    nw, nh = max(1, (w + 1) // 2), max(1, (h + 1) // 2)
    small = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA)
    K2 = K.copy()
    K2[0, 0] *= nw / w
    K2[1, 1] *= nh / h
    K2[0, 2] = (K[0, 2] + 0.5) * nw / w - 0.5
    K2[1, 2] = (K[1, 2] + 0.5) * nh / h - 0.5
    return small, K2


class _Reference:
    """The reference image's ZNCC statistics over ``patch`` x ``patch`` windows."""

    def __init__(self, gray: np.ndarray, K: np.ndarray, patch: int) -> None:
        self.gray, self.K, self.box = gray, K, (patch, patch)
        self.kernel = np.ones(self.box, np.uint8)
        mu = cv2.blur(gray, self.box)
        var = np.maximum(cv2.blur(gray * gray, self.box) - mu * mu, 0)
        self.mu = mu
        self.sd = np.sqrt(var)
        self.inv_sd = (1.0 / np.sqrt(var + 1e-6)).astype(np.float32)
        h, w = gray.shape
        self.grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def zncc(self, warped: np.ndarray) -> np.ndarray:
        """ZNCC (h, w) float32 of ``warped`` against the reference; -1 where the window
        reaches outside the source image (box filters are running sums, so a NaN border
        would leak: outside pixels carry a negative value and a min filter flags them)."""
        stack = cv2.merge([warped, warped * warped, warped * self.gray])
        mu_w, e_ww, e_wr = cast("Sequence[_F32]", cv2.split(cv2.blur(stack, self.box)))
        e_ww -= mu_w * mu_w
        np.maximum(e_ww, 0, out=e_ww)
        e_ww += 1e-6
        np.sqrt(e_ww, out=e_ww)
        e_wr -= mu_w * self.mu
        e_wr *= self.inv_sd
        e_wr /= e_ww
        np.copyto(e_wr, np.float32(-1.0), where=cv2.erode(warped, self.kernel) < 0)
        return e_wr


class _Source:
    """A source view's grey image and its geometry relative to the reference: a reference
    pixel x with inverse depth rho maps to ``(A x + rho b)`` (homogeneous) in the source,
    with ``A = K_s R_rel K_r^-1`` and ``b = K_s t_rel``."""

    def __init__(self, gray: np.ndarray, K: np.ndarray, ref: View, src: View, Kr: np.ndarray):
        self.gray = gray
        R_rel = src.R @ ref.R.T
        t_rel = src.t - R_rel @ ref.t
        self.A = K @ R_rel @ np.linalg.inv(Kr)
        self.b = K @ t_rel
        self._ax: list[np.ndarray] | None = None

    def warp_plane(self, rho: float, size: tuple[int, int]) -> np.ndarray:
        """Source image resampled on the reference grid through the fronto-parallel plane at
        inverse depth ``rho`` (homography ``A + b n^T rho`` with n = (0, 0, 1))."""
        H = self.A + np.outer(self.b, [0.0, 0.0, rho])
        return cv2.warpPerspective(
            self.gray,
            H,
            size,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=_OUTSIDE,
        )

    def warp_depths(self, ref: _Reference, rho: np.ndarray) -> np.ndarray:
        """Source image resampled on the reference grid with a per-pixel inverse depth
        ``rho`` (h, w)."""
        if self._ax is None:  # A x for every reference pixel, one plane per coordinate
            u, v = ref.grid
            A = self.A.astype(np.float32)
            self._ax = [A[i, 0] * u + A[i, 1] * v + A[i, 2] for i in range(3)]
        b = self.b.astype(np.float32)
        z = rho * b[2]
        z += self._ax[2]
        behind = z <= 1e-9
        np.maximum(z, 1e-9, out=z)
        np.reciprocal(z, out=z)
        mx = rho * b[0]
        mx += self._ax[0]
        mx *= z
        my = rho * b[1]
        my += self._ax[1]
        my *= z
        if behind.any():
            mx[behind] = -1e4
        return cv2.remap(
            self.gray, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
            borderValue=_OUTSIDE,
        )  # fmt: skip


def _aggregate(scores: Sequence[np.ndarray], k_top: int) -> np.ndarray:
    """Mean of the ``k_top`` best of the per-source scores, per pixel (an insertion network
    keeps the k best; np.partition along a short axis is far slower)."""
    if k_top >= len(scores):
        out = scores[0].copy()
        for s in scores[1:]:
            out += s
        return out / np.float32(len(scores))
    top = [np.full_like(scores[0], -np.inf) for _ in range(k_top)]
    for s in scores:
        cur = s
        for level in range(k_top):
            hi = np.maximum(top[level], cur)
            cur = np.minimum(top[level], cur)
            top[level] = hi
    out = top[0]
    for t in top[1:]:
        out += t
    return out / np.float32(k_top)


def _best_with_parabola(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Winner index (h, w), its score and the sub-sample offset in [-0.5, 0.5] from a
    parabola through the scores of the winner and its two neighbours."""
    D = volume.shape[0]
    best = np.argmax(volume, axis=0)
    score = np.take_along_axis(volume, best[None], 0)[0]
    s0 = np.take_along_axis(volume, np.clip(best - 1, 0, D - 1)[None], 0)[0]
    s2 = np.take_along_axis(volume, np.clip(best + 1, 0, D - 1)[None], 0)[0]
    denom = s0 - 2 * score + s2
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(denom < -1e-6, 0.5 * (s0 - s2) / denom, 0.0)
    return best, score, np.clip(off, -0.5, 0.5).astype(np.float32)


def plane_sweep(
    ref: View, sources: Sequence[View], near: float, far: float, params: MVSParams
) -> DepthMap:
    """Depth map of ``ref`` by a coarse-to-fine plane sweep over ``sources`` with ZNCC.

    1. Coarse: fronto-parallel planes (``num_planes / 2``, uniform in inverse depth between
       ``near`` and ``far``) swept at half resolution; winner-take-all with a parabolic
       refinement gives an inverse depth per pixel, median-filtered (5x5).
    2. Fine: at full resolution, ``2 * 4 + 1`` hypotheses per pixel around the upsampled
       coarse inverse depth, spaced at the step of a ``num_planes`` sweep; each source is
       resampled per pixel (the hypotheses follow the coarse surface, not a fronto-parallel
       plane), scored again, and the winner refined by a parabola.

    The same scheme as hierarchical plane sweeps (Gallup et al. 2007; Yang & Pollefeys,
    "Multi-resolution real-time stereo on commodity graphics hardware", CVPR 2003). Pixels
    whose winner lies at the edge of the fine window or of the depth range, with a score
    below ``min_score`` or in untextured windows get no depth. About 9 full-resolution
    passes per source instead of ``num_planes``: 5-6 times less work than a full sweep, with
    the same accuracy on the synthetic ground truth.

    All views must already be at matching resolution (see :meth:`View.scaled`). Returns depth
    in SfM units (0 where no confident match) and the aggregated ZNCC score, float32 (h, w).
    """
    w, h = ref.size
    gray_r = _gray(ref.image)
    grays = [_gray(s.image) for s in sources]
    k_top = max(1, min(params.top_k, len(sources)))
    lo_rho, hi_rho = 1.0 / far, 1.0 / near

    # coarse level: half resolution, half the planes
    gray_rc, K_rc = _half(gray_r, ref.K)
    ref_c = _Reference(gray_rc, K_rc, params.patch)
    src_c = []
    for s, g in zip(sources, grays, strict=True):
        gc, Kc = _half(g, s.K)
        src_c.append(_Source(gc, Kc, ref, s, K_rc))
    D_c = max(8, params.num_planes // 2)
    rhos = np.linspace(hi_rho, lo_rho, D_c)
    size_c = (gray_rc.shape[1], gray_rc.shape[0])
    volume = np.empty((D_c, size_c[1], size_c[0]), np.float32)
    for di, rho in enumerate(rhos):
        volume[di] = _aggregate([ref_c.zncc(s.warp_plane(rho, size_c)) for s in src_c], k_top)
    best_c, _, off_c = _best_with_parabola(volume)
    del volume
    step_c = rhos[1] - rhos[0]  # negative: rhos run from near to far
    rho_c = (rhos[best_c] + off_c * step_c).astype(np.float32)
    edge_c = (best_c == 0) | (best_c == D_c - 1)
    rho_c = cv2.medianBlur(rho_c, 5)  # WTA noise makes a jagged surface to follow
    rho_c = cv2.resize(rho_c, (w, h), interpolation=cv2.INTER_LINEAR)
    edge = cv2.resize(edge_c.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0

    # fine level: full resolution, per-pixel hypotheses around the coarse estimate
    ref_f = _Reference(gray_r, ref.K, params.patch)
    src_f = [_Source(g, s.K, ref, s, ref.K) for s, g in zip(sources, grays, strict=True)]
    step = np.float32((hi_rho - lo_rho) / max(params.num_planes - 1, 1))
    inv, score, interior = _fine_pass(ref_f, src_f, rho_c, step, k_top)
    with np.errstate(divide="ignore"):
        depth = (1.0 / inv).astype(np.float32)
    ok = (
        (ref_f.sd > params.min_texture)
        & (score >= params.min_score)
        & interior
        & ~edge
        & (inv > lo_rho + step)
        & (inv < hi_rho - step)
    )
    depth[~ok] = 0.0
    return DepthMap(depth=depth, confidence=score.astype(np.float32))


def _fine_pass(
    ref: _Reference, sources: Sequence[_Source], centre: np.ndarray, step: np.float32, k_top: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score ``2 R + 1`` per-pixel inverse depths ``centre + k step`` (k = -R..R); returns
    the parabola-refined inverse depth, its score and whether the winner is interior to the
    window (a winner on the edge means the optimum lies outside)."""
    R = _FINE_RADIUS
    fine = np.empty((2 * R + 1, *centre.shape), np.float32)
    for ki in range(2 * R + 1):
        rho = centre + np.float32(ki - R) * step
        fine[ki] = _aggregate([ref.zncc(s.warp_depths(ref, rho)) for s in sources], k_top)
    best, score, off = _best_with_parabola(fine)
    inv = centre + ((best - R).astype(np.float32) + off) * step
    return inv, score, (best > 0) & (best < 2 * R)


# --------------------------------------------------------------------------- consistency


def geometric_filter(
    views: Sequence[View],
    maps: Sequence[DepthMap],
    neighbors: Sequence[Sequence[int]],
    min_consistent: int = 2,
    max_reproj_px: float = 1.0,
    max_rel_depth: float = 0.01,
) -> list[DepthMap]:
    """Keep depths that agree with at least ``min_consistent`` neighbouring depth maps.

    For a pixel with depth d: back-project, project into neighbour j, read j's depth there
    (nearest pixel), back-project that, project back into the reference; agreement needs a
    reprojection error below ``max_reproj_px`` and a relative depth difference below
    ``max_rel_depth`` (forward-backward check of Schönberger et al. 2016).
    """
    out: list[DepthMap] = []
    for i, (v, m) in enumerate(zip(views, maps, strict=True)):
        h, w = m.depth.shape
        valid = m.depth > 0
        count = np.zeros((h, w), np.int32)
        if valid.any():
            X = v.backproject(m.depth)[valid]
            us, vs = np.nonzero(valid)[1], np.nonzero(valid)[0]
            d0 = m.depth[valid]
            for j in neighbors[i]:
                vj, mj = views[j], maps[j]
                uv, z = vj.project(X)
                hj, wj = mj.depth.shape
                ui = np.rint(uv[:, 0]).astype(np.int64)
                vi = np.rint(uv[:, 1]).astype(np.int64)
                inside = (z > 0) & (ui >= 0) & (ui < wj) & (vi >= 0) & (vi < hj)
                dj = np.zeros(len(X))
                dj[inside] = mj.depth[vi[inside], ui[inside]]
                has = inside & (dj > 0)
                if not has.any():
                    continue
                # back-project neighbour pixel (ui, vi) at depth dj, then into the reference
                rays = np.stack([ui[has], vi[has], np.ones(has.sum())], -1) @ np.linalg.inv(vj.K).T
                Xj = (rays * dj[has, None] - vj.t) @ vj.R
                uv2, z2 = v.project(Xj)
                err = np.hypot(uv2[:, 0] - us[has], uv2[:, 1] - vs[has])
                rel = np.abs(z2 - d0[has]) / d0[has]
                good = (err < max_reproj_px) & (rel < max_rel_depth)
                idx = np.nonzero(has)[0][good]
                count[vs[idx], us[idx]] += 1
        keep = count >= min(min_consistent, max(1, len(neighbors[i])))
        depth = np.where(keep, m.depth, 0).astype(np.float32)
        out.append(DepthMap(depth=depth, confidence=m.confidence))
    return out


def compute_depth_maps(
    views: Sequence[View],
    params: MVSParams | None = None,
    on_progress: ProgressFn | None = None,
    workers: int | None = None,
) -> tuple[list[View], list[DepthMap]]:
    """Plane-sweep depth maps for every view, then the geometric consistency filter.

    Returns the views at matching resolution (long side ``params.max_side``) and their
    filtered depth maps. Views without SfM points in front get an empty map. ``workers``:
    threads sweeping views at once (default: the CPU count); OpenCV and NumPy release the
    GIL in the per-pixel work, so threads use every core.
    """
    params = params or MVSParams()
    small = [v.scaled(params.max_side) for v in views]
    neighbors = select_neighbors(small, params)

    def sweep(i: int) -> DepthMap:
        v = small[i]
        bounds = depth_bounds(v)
        srcs = [small[j] for j in neighbors[i]]
        if bounds is None or not srcs:
            z = np.zeros(v.image.shape[:2], np.float32)
            return DepthMap(z, z.copy())
        return plane_sweep(v, srcs, bounds[0], bounds[1], params)

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(small)))
    raw: list[DepthMap] = []
    with ThreadPoolExecutor(n_workers) as pool:
        for dm in pool.map(sweep, range(len(small))):
            raw.append(dm)
            if on_progress:
                on_progress(len(raw) / (len(small) + 1), "depth_maps")
    filtered = geometric_filter(small, raw, neighbors, params.min_consistent)
    if on_progress:
        on_progress(1.0, "depth_maps")
    return small, filtered
