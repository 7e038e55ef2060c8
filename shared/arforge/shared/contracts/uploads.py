"""Upload kinds and the file extensions that claim them (one table for the API and the CLI).

The API decides an upload's kind from its bytes and refuses a file whose extension claims
another kind; the CLI uses the same table to check a job's inputs before uploading them.
"""

from __future__ import annotations

#: Extension (lower case, no dot) -> upload kind, as the API's content sniffing names them.
KIND_BY_EXTENSION: dict[str, str] = {
    **dict.fromkeys(("mp4", "m4v", "mov", "qt", "mkv", "webm", "3gp", "3g2"), "video"),
    **dict.fromkeys(("jpg", "jpeg", "jpe", "png", "webp", "heic", "heif", "avif"), "image"),
    "zip": "images_zip",
    "glb": "glb",
    "gltf": "gltf",
    "usdz": "usdz",
    "ply": "ply",
}


def kind_for_extension(ext: str) -> str | None:
    """The kind extension ``ext`` claims (any case, with or without the dot), or ``None``."""
    return KIND_BY_EXTENSION.get(ext.strip().lower().removeprefix("."))
