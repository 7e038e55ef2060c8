"""Sentences for the job result about images that the model does not use.

Photos dropped at ingest (unreadable, damaged), images with nothing to match, images SfM
could not place and captures that split into separate models are each reported as one
warning per reason: the first few names (original upload file names where known) and
the count. Pure text: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["display_name", "dropped_warning", "placement_warning", "series"]

#: How many names a warning lists before "and N more".
MAX_NAMES = 5


def series(items: Sequence[str], *, limit: int = MAX_NAMES) -> str:
    """``items`` as an English list: "a", "a and b", "a, b and c", and past ``limit``
    items "a, b, c, d, e and 7 more". Empty ``items`` give ""."""
    items = list(items)
    if len(items) > limit:
        return f"{', '.join(items[:limit])} and {len(items) - limit} more"
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def display_name(name: str | None, index: int) -> str:
    """How a warning names input ``index`` (0-based): the base name of the original
    upload file name ``name`` (any client folder dropped, unprintable characters as
    "?"), else "input <index + 1>"."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base:
        return f"input {index + 1}"
    return "".join(c if c.isprintable() else "?" for c in base)


def dropped_warning(noun: str, names: Sequence[str], one: str, many: str) -> str:
    """One warning for ``names`` left out for one reason.

    ``noun``: what they are ("photo", "image"); ``one`` / ``many``: the reason as a
    singular / plural verb phrase ("could not be decoded (truncated or damaged)").
    One name: "photo a.jpg could not be decoded (truncated or damaged) and was left
    out"; several: "3 photos could not be ... and were left out: a.jpg, b.jpg and c.jpg".
    Raises ``ValueError`` for no names.
    """
    if not names:
        raise ValueError("dropped_warning needs at least one name")
    if len(names) == 1:
        return f"{noun} {names[0]} {one} and was left out"
    return f"{len(names)} {noun}s {many} and were left out: {series(names)}"


def placement_warning(
    total: int,
    registered: int,
    other_models: Sequence[int],
    unplaced: Sequence[str],
    *,
    noun: str = "image",
) -> str | None:
    """The warning for a kept model that holds only ``registered`` of ``total`` images.

    ``other_models``: per other model found, how many of its images the kept model
    lacks (zeros are ignored); ``unplaced``: names of the images in no model (those
    left out for a reason reported elsewhere excluded). With no other model: "3 of 15
    images could not be placed in the model and were left out: a, b and c". With
    others: "the images formed 2 separate models that could not be joined; the result
    uses the largest, which holds 10 of 15 images (67%); the other model holds 5 images",
    plus ", and 1 image could not be placed in any model: a" when some are in none.
    None when there is nothing to report (no other model, nothing unplaced). ``noun``:
    what the inputs are ("image", or "frame" for a video's keyframes).
    """
    others = sorted((n for n in other_models if n > 0), reverse=True)
    if not others:
        if not unplaced:
            return None
        verb = "was" if len(unplaced) == 1 else "were"
        return (
            f"{len(unplaced)} of {total} {noun}s could not be placed in the model and "
            f"{verb} left out: {series(unplaced)}"
        )
    if len(others) == 1:
        rest = f"the other model holds {_count(others[0], noun)}"
    else:
        counts = series([str(n) for n in others], limit=len(others))
        rest = f"the other {len(others)} models hold {counts} {noun}s"
    text = (
        f"the {noun}s formed {len(others) + 1} separate models that could not be joined; "
        f"the result uses the largest, which holds {registered} of {total} {noun}s "
        f"({registered / total:.0%}); {rest}"
    )
    if unplaced:
        text += (
            f", and {_count(len(unplaced), noun)} could not be placed in any model: "
            f"{series(unplaced)}"
        )
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
