"""The photogrammetry job as one compute function: inputs -> keyframes -> SfM -> model.

Pure compute over local paths (no asyncio, NATS or storage): the worker runs
:func:`run_pipeline` in an isolated child process group (pycolmap can abort the process).
Stages and their share of the progress bar: ingest 0-10 %, SfM 10-45 %, dense
reconstruction, meshing, texturing and export 45-100 %.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from arforge.shared.errors import JobFailed

from .frames import extract_keyframes
from .images import prepare_photos
from .reconstruct import reconstruct_model
from .sfm import run_sfm

ProgressFn = Callable[[float, str], None]

#: Contract quality preset -> (reconstruction quality, max SIFT features).
QUALITY = {"draft": ("low", 4096), "standard": ("medium", 8192), "high": ("high", 16384)}
VIDEO_KINDS = {"video"}


def _span(on_progress: ProgressFn | None, start: float, end: float) -> ProgressFn:
    def report(fraction: float, stage: str) -> None:
        if on_progress is not None:
            on_progress(start + (end - start) * min(max(fraction, 0.0), 1.0), stage)

    return report


def run_pipeline(
    inputs: list[tuple[str, str]],
    work_dir: str,
    params: dict[str, Any],
    *,
    input_names: Sequence[str | None] | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Reconstruct a textured model from a video or photos.

    ``inputs``: ``[(local_path, kind), ...]`` with kind ``video`` (exactly one) or
    ``image`` / ``images_zip`` (any number). ``input_names``: the original upload file
    name of each input (None where unknown), used in warnings about photos left out
    (else the local file names). ``params``: a validated
    ``PhotogrammetryParams`` dict. Writes ``model.glb``, ``model.usdz``, ``preview.png``
    and ``report.json`` into ``work_dir/out`` and returns the report (timings in seconds,
    counts, SfM quality, model size, ``warnings``: sentences for the job result). Raises
    ``JobFailed`` with the codes of the probe, keyframe, SfM and reconstruction stages.
    """
    t0 = time.perf_counter()
    work = Path(work_dir)
    images = work / "images"
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    quality, max_features = QUALITY[params.get("quality", "standard")]
    max_size = int(params.get("max_image_size", 1200))
    timings: dict[str, float] = {}
    warnings: list[str] = []
    report: dict[str, Any] = {"params": params, "warnings": warnings}

    kinds = {k for _, k in inputs}
    is_video = bool(kinds & VIDEO_KINDS)
    if is_video and len(inputs) != 1:
        raise JobFailed("invalid_inputs", "Give one video, or a set of photos, not both.")
    t = time.perf_counter()
    if is_video:
        frames = extract_keyframes(
            inputs[0][0],
            images,
            max_frames=int(params.get("max_frames", 150)),
            max_image_size=max_size,
            on_progress=_span(on_progress, 0.0, 0.1),
        )
        report["ingest"] = {
            "source": "video",
            "decoded": frames.decoded,
            "kept": frames.kept,
            "rejected_blurry": frames.rejected_blurry,
            "duplicates": frames.duplicates,
            "rotation": frames.rotation,
            "mode": frames.mode,
            "truncated": frames.truncated,
            "damaged": frames.damaged,
            "expected_frames": frames.expected_frames,
            "damaged_at_frame": frames.damaged_at_frame,
            "damaged_at_s": frames.damaged_at_s,
            "size": [frames.output_width, frames.output_height],
        }
        warnings.extend(frames.warnings)
        source_side = max(frames.width, frames.height)
        labels = {
            f: f"at {t:.2f} s" for f, t in zip(frames.files, frames.timestamps_s, strict=True)
        }
    else:
        photos = prepare_photos(
            [p for p, _ in inputs],
            images,
            names=input_names,
            max_image_size=max_size,
            on_progress=_span(on_progress, 0.0, 0.1),
        )
        report["ingest"] = {
            "source": "photos",
            **_public(photos),
            "rejected": [{"name": n, "reason": r} for n, r in photos.rejected],
        }
        warnings.extend(photos.warnings)
        source_side = photos.source_long_side
        labels = dict(zip(photos.files, photos.sources, strict=True))
    timings["ingest"] = time.perf_counter() - t

    t = time.perf_counter()
    matcher = params.get("matcher", "auto")
    sfm = run_sfm(
        images,
        work / "sfm",
        matcher=matcher,
        ordered=is_video,
        max_image_size=max_size,
        source_long_side=source_side,
        max_num_features=max_features,
        labels=labels,
        on_progress=_span(on_progress, 0.1, 0.45),
    )
    timings["sfm"] = time.perf_counter() - t
    report["sfm"] = {
        "registered_images": sfm.registered_images,
        "total_images": sfm.total_images,
        "points3d": sfm.points3d,
        "mean_reprojection_error_px": round(sfm.mean_reprojection_error_px, 4),
        "models": sfm.models,
        "matcher": sfm.matcher,
        "warnings": sfm.warnings,
    }
    warnings.extend(sfm.warnings)

    t = time.perf_counter()
    model = reconstruct_model(
        sfm.model_dir,
        images,
        out,
        target_faces=int(params.get("target_faces", 50_000)),
        texture_size=int(params.get("texture_size", 2048)),
        quality=quality,
        on_progress=_span(on_progress, 0.45, 1.0),
    )
    timings["model"] = time.perf_counter() - t
    report["model"] = model.to_dict()
    timings["total"] = time.perf_counter() - t0
    report["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def _public(obj: Any) -> dict[str, Any]:
    d = obj.to_dict() if hasattr(obj, "to_dict") else dict(vars(obj))
    return {k: v for k, v in d.items() if isinstance(v, int | float | str | bool)}
