"""Async adapter between the job runtime and :mod:`.pipeline` (no NATS here)."""

from __future__ import annotations

from arforge.shared.contracts.registry import (
    PhotogrammetryParams,
    PhotogrammetryResult,
    SfMReport,
)
from arforge.shared.errors import ChildCrashed
from arforge.shared.runtime import JobContext

from .pipeline import run_pipeline
from .sfm import classify_native_abort

ARTIFACTS = (
    ("model.glb", "model/gltf-binary"),
    ("model.usdz", "model/vnd.usdz+zip"),
    ("preview.png", "image/png"),
    ("report.json", "application/json"),
)


async def handle_photogrammetry(
    ctx: JobContext, params: PhotogrammetryParams
) -> PhotogrammetryResult:
    """Download inputs, run the pipeline isolated, upload model.glb / model.usdz /
    preview.png / report.json under ``jobs/<job_id>/``. Warnings name inputs by their
    original upload file names."""
    ctx.progress(0.0, "download")
    paths = await ctx.fetch_inputs()
    inputs = [(str(p), ref.kind) for p, ref in zip(paths, ctx.job.inputs, strict=True)]
    work = ctx.workdir / "pipeline"
    try:
        report = await ctx.run_isolated(
            run_pipeline,
            inputs,
            str(work),
            params.model_dump(),
            input_names=[ref.filename for ref in ctx.job.inputs],
            on_progress=ctx.sub_progress(0.0, 0.97),
        )
    except ChildCrashed as e:
        known = classify_native_abort(e.stderr_tail)
        if known is not None:
            raise known from None
        raise
    ctx.progress(0.97, "upload")
    out = work / "out"
    artifacts = [
        await ctx.put_artifact(name, out / name, ctype)
        for name, ctype in ARTIFACTS
        if (out / name).exists()
    ]
    sfm = report["sfm"]
    ctx.progress(1.0, "done")
    return PhotogrammetryResult(
        artifacts=artifacts,
        sfm=SfMReport(**{k: sfm[k] for k in SfMReport.model_fields}),
        faces=report["model"]["faces"],
        warnings=report.get("warnings", []),
    )


__all__ = ["handle_photogrammetry"]
