"""The result of structure from motion and its JSON report (``sfm_report.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap


@dataclass
class ModelSummary:
    """One sparse model: registered images, 3D points, mean reprojection error in pixels,
    mean track length (observations per 3D point) and camera count."""

    registered_images: int
    points3d: int
    mean_reprojection_error_px: float
    mean_track_length: float
    cameras: int


def summarize(reconstruction: pycolmap.Reconstruction) -> ModelSummary:
    """Figures of one ``pycolmap.Reconstruction`` (0 error / length for an empty model)."""
    has_points = reconstruction.num_points3D() > 0
    return ModelSummary(
        registered_images=int(reconstruction.num_reg_images()),
        points3d=int(reconstruction.num_points3D()),
        mean_reprojection_error_px=float(reconstruction.compute_mean_reprojection_error())
        if has_points
        else 0.0,
        mean_track_length=float(reconstruction.compute_mean_track_length()) if has_points else 0.0,
        cameras=int(reconstruction.num_cameras()),
    )


def camera_centres(reconstruction: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    """World-space projection centres (3,) of the registered images, keyed by image name."""
    return {
        image.name: np.asarray(image.projection_center(), dtype=float)
        for image in reconstruction.images.values()
        if image.has_pose
    }


@dataclass
class SfMResult:
    """What ``run_sfm`` produced.

    ``model_dir`` holds the chosen (largest) model in COLMAP binary format
    (``cameras.bin``, ``images.bin``, ``points3D.bin``, ``rigs.bin``, ``frames.bin``);
    images are named relative to ``image_dir``. ``models`` lists registered images per
    model found, largest first. ``timings_s`` maps stage -> wall seconds.
    ``camera_groups`` is the number of cameras (shared intrinsics) set up for the input,
    ``cameras`` those in the model.
    ``peak_rss_mb`` is the peak resident memory of the process that ran SfM.
    """

    image_dir: Path
    model_dir: Path
    report_path: Path
    database_path: Path
    total_images: int
    registered_images: int
    points3d: int
    mean_reprojection_error_px: float
    mean_track_length: float
    models: list[int]
    registered_names: list[str]
    unregistered_names: list[str]
    matcher: str
    camera_mode: str
    camera_groups: int
    cameras: int
    device: str
    num_pairs: int
    match_graph: dict[str, Any]
    timings_s: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    refinement: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float = 0.0

    @property
    def registered_ratio(self) -> float:
        return self.registered_images / self.total_images if self.total_images else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("image_dir", "model_dir", "report_path", "database_path"):
            d[key] = str(d[key])
        d["registered_ratio"] = round(self.registered_ratio, 4)
        return d

    def to_contract(self) -> dict[str, Any]:
        """Fields of the shared ``SfMReport`` contract model (contracts/registry.py)."""
        return {
            "registered_images": self.registered_images,
            "total_images": self.total_images,
            "points3d": self.points3d,
            "mean_reprojection_error_px": self.mean_reprojection_error_px,
            "models": list(self.models),
        }


def write_report(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (atomic rename) and return ``path``."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path
