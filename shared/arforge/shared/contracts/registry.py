"""The contract registry: one :class:`JobSpec` per job type.

Everything else (API routes, consumers, tracker, webhooks, compose) reads this table.
Policies are the product's seeds and can be overridden per deployment through
``ARFORGE_POLICIES`` (see :mod:`arforge.shared.settings`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import JobResult, JobSpec, RetryPolicy


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- photogrammetry ---------------------------------------------------------------
class PhotogrammetryParams(_Params):
    quality: Literal["draft", "standard", "high"] = Field(
        "standard", description="Preset for feature count, dense resolution and faces"
    )
    max_frames: int = Field(150, ge=3, le=2000, description="Keyframes kept from a video")
    max_image_size: int = Field(
        1200,
        ge=320,
        le=8192,
        description="Long side in pixels the images are downscaled to for SfM; under about "
        "1000 px hard captures (smooth, shiny, dark) may not register",
    )
    target_faces: int = Field(
        50_000,
        ge=500,
        le=5_000_000,
        description="Decimation target; 50k keeps AR Quick Look fast and halves UV unwrapping",
    )
    texture_size: int = Field(2048, ge=256, le=8192, description="Texture atlas side, px")
    matcher: Literal["auto", "sequential", "exhaustive"] = "auto"


class SfMReport(BaseModel):
    registered_images: int
    total_images: int
    points3d: int
    mean_reprojection_error_px: float
    models: list[int] = Field([], description="Registered images per model found")


class PhotogrammetryResult(JobResult):
    sfm: SfMReport | None = None
    faces: int | None = None
    warnings: list[str] = Field(
        [], description="Things the user should know, e.g. a truncated video or a split model"
    )


# --- splatting --------------------------------------------------------------------
class SplattingParams(_Params):
    iterations: int = Field(7000, ge=100, le=100_000)
    max_frames: int = Field(150, ge=3, le=2000)
    sh_degree: int = Field(3, ge=0, le=3, description="Spherical harmonics degree")


class SplattingResult(JobResult):
    splats: int | None = None


# --- ai ---------------------------------------------------------------------------
class VisionParams(_Params):
    prompt: str = Field(min_length=1, max_length=8000)
    model: str = "llava"
    max_tokens: int = Field(512, ge=1, le=8192)


class VisionResult(JobResult):
    text: str
    model: str


class GenerationParams(_Params):
    mode: Literal["txt2img", "img2img", "inpainting"] = "txt2img"
    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str | None = None
    steps: int = Field(30, ge=1, le=150)
    guidance_scale: float = Field(7.5, ge=0, le=30)
    width: int = Field(512, ge=64, le=2048, multiple_of=8)
    height: int = Field(512, ge=64, le=2048, multiple_of=8)
    strength: float = Field(0.75, ge=0, le=1, description="img2img / inpainting only")
    seed: int | None = None


class GenerationResult(JobResult):
    seed: int


# --- mesh -------------------------------------------------------------------------
class MeshParams(_Params):
    lod_ratios: tuple[float, float, float] = Field(
        (1.0, 0.35, 0.1), description="Face ratios for high / medium / low LODs"
    )


class MeshResult(JobResult):
    lod_faces: dict[str, int] = {}


_VIDEO_OR_PHOTOS = frozenset({"video", "image", "images_zip"})

SEED_SPECS: tuple[JobSpec, ...] = (
    JobSpec(
        type="photogrammetry",
        description="Walk-around video or photos -> textured GLB + USDZ (SfM + MVS)",
        params=PhotogrammetryParams,
        result=PhotogrammetryResult,
        policy=RetryPolicy(delays_s=(60, 120, 300), timeout_s=3600),
        input_kinds=_VIDEO_OR_PHOTOS,
        min_inputs=1,
        max_inputs=500,
        sole_kinds=frozenset({"video"}),
        min_images=3,
    ),
    JobSpec(
        type="splatting",
        implemented=False,
        description="Walk-around video -> 3D Gaussian splatting PLY",
        params=SplattingParams,
        result=SplattingResult,
        policy=RetryPolicy(delays_s=(300, 600), timeout_s=7200),
        input_kinds=_VIDEO_OR_PHOTOS,
        min_inputs=1,
        max_inputs=500,
        sole_kinds=frozenset({"video"}),
        min_images=3,
    ),
    JobSpec(
        type="ai-vision",
        implemented=False,
        description="Image + prompt -> text (Ollama vision model)",
        params=VisionParams,
        result=VisionResult,
        policy=RetryPolicy(delays_s=(10, 30), timeout_s=180),
        input_kinds=frozenset({"image"}),
        min_inputs=1,
        max_inputs=1,
    ),
    JobSpec(
        type="ai-generation",
        implemented=False,
        description="Stable Diffusion txt2img / img2img / inpainting -> PNG",
        params=GenerationParams,
        result=GenerationResult,
        policy=RetryPolicy(delays_s=(30, 60), timeout_s=600),
        input_kinds=frozenset({"image"}),
        min_inputs=0,
        max_inputs=2,
    ),
    JobSpec(
        type="mesh",
        implemented=False,
        description="GLB / USDZ -> high, medium and low LODs",
        params=MeshParams,
        result=MeshResult,
        policy=RetryPolicy(delays_s=(60, 120), timeout_s=1800),
        input_kinds=frozenset({"glb", "gltf", "usdz"}),
        min_inputs=1,
        max_inputs=1,
    ),
)


class Registry:
    """Job specs by type, with per-deployment policy overrides applied."""

    def __init__(self, specs: tuple[JobSpec, ...] | list[JobSpec] = SEED_SPECS) -> None:
        self._specs = {s.type: s for s in specs}

    def __getitem__(self, job_type: str) -> JobSpec:
        return self._specs[job_type]

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._specs

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._specs.values())

    def types(self) -> list[str]:
        return sorted(self._specs)

    def with_overrides(self, overrides: dict) -> Registry:  # type: ignore[type-arg]
        """A copy whose policies take ``{type: {delays_s, timeout_s, jitter}}`` values."""
        import dataclasses

        specs = []
        for spec in self._specs.values():
            o = overrides.get(spec.type)
            if o is not None:
                o = o if isinstance(o, dict) else o.model_dump()
                upd = {k: v for k, v in o.items() if v is not None}
                policy = RetryPolicy.model_validate({**spec.policy.model_dump(), **upd})
                spec = dataclasses.replace(spec, policy=policy)
            specs.append(spec)
        return Registry(specs)


def default_registry() -> Registry:
    """The seed registry with the environment's policy overrides applied."""
    from ..settings import get_settings

    return Registry().with_overrides(get_settings().policies)
