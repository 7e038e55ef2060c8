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

from arforge.shared.contracts.uploads import KIND_BY_EXTENSION, kind_for_extension

__all__ = ["KIND_BY_EXTENSION", "kind_of", "kinds_of"]


def kind_of(path: Path) -> str | None:
    """The upload kind ``path``'s extension claims (any case), or ``None`` for a file
    without a known extension (its kind is only known once the API has read it)."""
    return kind_for_extension(path.suffix) if path.suffix else None


def kinds_of(paths: Iterable[Path]) -> list[str | None]:
    """:func:`kind_of` for each path, in order."""
    return [kind_of(p) for p in paths]
