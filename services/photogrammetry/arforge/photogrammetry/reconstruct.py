"""Dense reconstruction after SfM: depth maps -> TSDF -> clean mesh -> texture -> GLB/USDZ.

Pure compute over local paths (no asyncio, NATS or storage); progress goes to
``on_progress(fraction, stage)`` with fraction in [0, 1] over the whole chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from arforge.photogrammetry import fusion, gltf, meshing, mvs, preview, texture, usdz

ProgressFn = Callable[[float, str], None]

# (stage, share of the total time) for progress reporting
_STAGES = [
    ("load", 0.03),
    ("depth_maps", 0.55),
    ("fusion", 0.1),
    ("meshing", 0.07),
    ("texture", 0.2),
    ("export", 0.05),
]


@dataclass
class ModelReport:
    """What :func:`reconstruct_model` made. Lengths are in model units: metres when
    ``scale_known`` else SfM units (``meters_per_unit`` is then 1.0 by convention)."""

    views: int
    faces: int
    vertices: int
    texture_size: int
    texture_coverage: float
    dense_points: int
    depth_valid_ratio: float
    bbox_min: list[float]
    bbox_max: list[float]
    meters_per_unit: float
    scale_known: bool
    timings_s: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _StageProgress(Protocol):
    """One stage's progress callback: ``(fraction, stage)``, the stage name optional."""

    def __call__(self, frac: float, _stage: str = ...) -> None: ...


def _reporter(on_progress: ProgressFn | None) -> Callable[[str], _StageProgress]:
    starts, acc = {}, 0.0
    for name, share in _STAGES:
        starts[name] = (acc, share)
        acc += share

    def stage(name: str) -> _StageProgress:
        base, share = starts[name]

        def cb(frac: float, _stage: str = name) -> None:
            if on_progress:
                on_progress(min(1.0, base + share * max(0.0, min(1.0, frac))), name)

        return cb

    return stage


def reconstruct_model(
    sparse_dir: Path | str,
    image_dir: Path | str,
    out_dir: Path | str,
    *,
    target_faces: int = 50_000,
    texture_size: int = 2048,
    quality: str = "medium",
    on_progress: ProgressFn | None = None,
    tsdf_resolution: int | None = None,
    meters_per_unit: float | None = None,
) -> ModelReport:
    """Build ``model.glb``, ``model.usdz`` and ``preview.png`` in ``out_dir`` from a COLMAP
    sparse model and its (distorted) images.

    ``quality``: "low" | "medium" | "high" (MVS resolution, planes and TSDF resolution);
    ``target_faces``: decimation target; ``texture_size``: atlas side in px;
    ``meters_per_unit``: metric scale of the SfM frame when known (else SfM units are kept
    and reported as unknown). Raises :class:`mvs.MVSError` (``code`` in
    no_registered_views / no_dense_points / empty_mesh) when the input cannot make a model.
    """
    if quality not in mvs.QUALITY_PRESETS:
        raise ValueError(f"quality must be one of {sorted(mvs.QUALITY_PRESETS)}")
    params = mvs.QUALITY_PRESETS[quality]
    res = tsdf_resolution or {"low": 192, "medium": 256, "high": 384}[quality]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = _reporter(on_progress)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    views = mvs.load_views(sparse_dir, image_dir, max_side=max(1600, params.max_side))
    stage("load")(1.0)
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    small, maps = mvs.compute_depth_maps(views, params, stage("depth_maps"))
    timings["depth_maps"] = time.perf_counter() - t

    t = time.perf_counter()
    pts, _ = fusion.fused_points(small, maps)
    region = fusion.object_region(small, pts)
    raw = fusion.integrate_tsdf(small, maps, region, resolution=res, on_progress=stage("fusion"))
    timings["fusion"] = time.perf_counter() - t

    t = time.perf_counter()
    mesh = meshing.from_open3d(raw)
    mesh = meshing.isolate_object(mesh, region.focus, region.radius, planes=region.planes)
    diag = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
    mesh = meshing.fill_small_holes(mesh, 0.05 * diag)
    mesh = meshing.decimate(mesh, target_faces)
    stage("meshing")(1.0)
    timings["meshing"] = time.perf_counter() - t

    t = time.perf_counter()
    unwrapped, uvs = texture.unwrap(mesh, texture_size)
    tm = texture.bake_texture(unwrapped, uvs, views, texture_size, on_progress=stage("texture"))
    timings["texture"] = time.perf_counter() - t

    t = time.perf_counter()
    rot = meshing.up_frame(views, region.focus)
    scale_known = meters_per_unit is not None
    T = meshing.placement(tm.mesh, rot)
    tm.mesh = meshing.transform(tm.mesh, T)
    glb = gltf.write_glb(tm, out / "model.glb")
    usd = usdz.write_usdz(tm, out / "model.usdz", meters_per_unit=meters_per_unit or 1.0)
    png = preview.write_preview(tm, out / "preview.png")
    stage("export")(1.0)
    timings["export"] = time.perf_counter() - t

    lo, hi = tm.mesh.bounds
    report = ModelReport(
        views=len(views),
        faces=len(tm.mesh.faces),
        vertices=len(tm.mesh.vertices),
        texture_size=texture_size,
        texture_coverage=round(tm.coverage, 4),
        dense_points=len(pts),
        depth_valid_ratio=round(float(np.mean([m.valid_ratio for m in maps])), 4),
        bbox_min=lo.tolist(),
        bbox_max=hi.tolist(),
        meters_per_unit=meters_per_unit or 1.0,
        scale_known=scale_known,
        timings_s={k: round(v, 2) for k, v in timings.items()},
        files={"glb": glb.name, "usdz": usd.name, "preview": png.name},
    )
    (out / "model_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report
