"""What this machine's pycolmap can run: a capability check made once at start-up.

COLMAP's GPU SIFT needs either CUDA or an OpenGL context; without a display the OpenGL
path crashes the process (colmap #2167, pycolmap #126), so the device is chosen here from
``pycolmap.has_cuda`` and the CPU is used whenever CUDA is missing. Asking for a GPU on a
machine without CUDA is refused with a clear ``gpu_unavailable`` failure instead.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Literal

import pycolmap

from arforge.shared.errors import JobFailed

DeviceRequest = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Capabilities:
    """pycolmap build facts: ``cuda`` is True when SIFT, matching and BA can use CUDA."""

    pycolmap_version: str
    colmap_version: str
    cuda: bool
    cpu_count: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def detect() -> Capabilities:
    """Inspect the imported pycolmap build (cheap; no GPU context is created)."""
    return Capabilities(
        pycolmap_version=str(pycolmap.__version__),
        colmap_version=str(getattr(pycolmap, "COLMAP_version", "unknown")),
        cuda=bool(pycolmap.has_cuda),
        cpu_count=os.cpu_count() or 1,
    )


def choose_device(request: DeviceRequest, caps: Capabilities | None = None) -> pycolmap.Device:
    """Map a device request to ``pycolmap.Device``, never falling back to OpenGL.

    ``auto`` gives CUDA when the build has it, else the CPU. ``cuda`` without CUDA raises
    ``JobFailed("gpu_unavailable")``. Any other value raises ``ValueError``.
    """
    caps = caps or detect()
    if request == "cpu":
        return pycolmap.Device.cpu
    if request == "auto":
        return pycolmap.Device.cuda if caps.cuda else pycolmap.Device.cpu
    if request == "cuda":
        if not caps.cuda:
            raise JobFailed(
                "gpu_unavailable",
                "A GPU was requested for feature extraction and matching, but this worker's "
                f"pycolmap {caps.pycolmap_version} was built without CUDA; use device "
                "'auto' or 'cpu' (SIFT then runs on the CPU).",
                {"requested": request, "cuda": False},
            )
        return pycolmap.Device.cuda
    raise ValueError(f"unknown device request {request!r}; expected auto, cpu or cuda")
