"""Image-pair selection for SfM feature matching (which pairs of images to match).

Pairs are ``(i, j)`` index tuples into the ordered image list with ``i < j``, without
duplicates, in a stable order. The schemes follow COLMAP's matchers (Schönberger & Frahm,
"Structure-from-Motion Revisited", CVPR 2016; COLMAP ``SequentialPairGenerator`` and
``ExhaustivePairGenerator``), plus a wrap-around window that closes the loop of a
walk-around capture without needing a vocabulary tree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

Pair = tuple[int, int]


def exhaustive_pairs(num_images: int) -> list[Pair]:
    """All ``n * (n - 1) / 2`` pairs of ``num_images`` images."""
    return [(i, j) for i in range(num_images) for j in range(i + 1, num_images)]


def sequential_pairs(
    num_images: int,
    *,
    overlap: int = 12,
    quadratic: bool = True,
    loop_closure: bool = True,
) -> list[Pair]:
    """Pairs for an ordered capture (video frames, photos taken while walking).

    Each image is matched with its ``overlap`` successors; with ``quadratic`` also with the
    successors at distances 2^k beyond the window, in the spirit of COLMAP's
    ``quadratic_overlap``, which links frames across short gaps (blur, occlusion).
    With ``loop_closure`` the window wraps around the end of the sequence, so the last
    frames of a walk-around are matched with the first ones (the capture returns to its
    start); geometric verification rejects these pairs when the loop is not closed.
    """
    if num_images < 2:
        return []
    overlap = max(1, overlap)
    pairs: set[Pair] = set()
    for i in range(num_images):
        for d in range(1, overlap + 1):
            j = i + d
            if j < num_images:
                pairs.add((i, j))
            elif loop_closure and num_images > 2 * overlap:
                pairs.add(_ordered(i, j - num_images))
        if quadratic:
            d = 1
            while i + d < num_images:
                if d > overlap:
                    pairs.add((i, i + d))
                d *= 2
    return sorted(pairs)


def _ordered(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


def write_pairs_file(path: Path, names: Sequence[str], pairs: Sequence[Pair]) -> Path:
    """Write ``pairs`` as COLMAP's match list (``name1 name2`` per line) and return ``path``."""
    path.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in pairs))
    return path


def chunked(pairs: Sequence[Pair], num_chunks: int) -> Iterator[Sequence[Pair]]:
    """Split ``pairs`` into at most ``num_chunks`` contiguous, nearly equal slices."""
    if not pairs:
        return
    num_chunks = max(1, min(num_chunks, len(pairs)))
    size = -(-len(pairs) // num_chunks)
    for start in range(0, len(pairs), size):
        yield pairs[start : start + size]
