"""The upload kind a local file will most likely get, from its name, for checks before upload.

The API decides an upload's kind (``video``, ``image``, ``images_zip``, ``glb``, ``gltf``,
``usdz``, ``ply``) from the file's bytes; a file whose extension claims another kind is
refused there. So the extension is a fair guess of the kind the API will record, good
enough to refuse a job's inputs locally (``JobSpec.input_problem``) before anything is
uploaded. The API checks the real kinds again when the job is submitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Extension (lower case, no dot) -> upload kind, as the API's content sniffing names them.
KIND_BY_EXTENSION: dict[str, str] = {
    **dict.fromkeys(("mp4", "m4v", "mov", "qt", "mkv", "webm", "3gp", "3g2"), "video"),
    **dict.fromkeys(("jpg", "jpeg", "jpe", "png", "webp", "heic", "heif", "avif"), "image"),
    "zip": "images_zip",
    "glb": "glb",
    "gltf": "gltf",
    "usdz": "usdz",
    "ply": "ply",
}


def kind_of(path: Path) -> str | None:
    """The upload kind ``path``'s extension claims (any case), or ``None`` for a file
    without a known extension (its kind is only known once the API has read it)."""
    return KIND_BY_EXTENSION.get(path.suffix.lower().removeprefix("."))


def kinds_of(paths: Iterable[Path]) -> list[str | None]:
    """:func:`kind_of` for each path, in order."""
    return [kind_of(p) for p in paths]
