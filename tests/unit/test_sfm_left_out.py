"""The sentences that report images left out of a model (ingest drops, featureless
images, unplaced images, split captures): exact wording for each count."""

from __future__ import annotations

import pytest

from arforge.photogrammetry.left_out import (
    display_name,
    dropped_warning,
    placement_warning,
    series,
)


def test_series_joins_in_english_and_caps_the_names() -> None:
    assert series([]) == ""
    assert series(["a.jpg"]) == "a.jpg"
    assert series(["a.jpg", "b.jpg"]) == "a.jpg and b.jpg"
    assert series(["a", "b", "c"]) == "a, b and c"
    assert series([f"{i}.jpg" for i in range(1, 6)]) == "1.jpg, 2.jpg, 3.jpg, 4.jpg and 5.jpg"
    assert series([f"{i}.jpg" for i in range(1, 13)]) == (
        "1.jpg, 2.jpg, 3.jpg, 4.jpg, 5.jpg and 7 more"
    )


def test_display_name_uses_the_upload_name_else_the_input_number() -> None:
    assert display_name("IMG_0042.jpg", 3) == "IMG_0042.jpg"
    assert display_name("C:\\Users\\me\\DCIM\\IMG_1.JPG", 0) == "IMG_1.JPG"
    assert display_name("holiday/IMG 2.heic", 0) == "IMG 2.heic"
    assert display_name("bad\nname.jpg", 0) == "bad?name.jpg"
    assert display_name(None, 10) == "input 11"
    assert display_name("  ", 0) == "input 1"


def test_dropped_warning_for_one_and_several() -> None:
    one, many = "could not be decoded (truncated or damaged)", "could not be decoded (damaged)"
    assert dropped_warning("photo", ["IMG_0042.jpg"], one, many) == (
        "photo IMG_0042.jpg could not be decoded (truncated or damaged) and was left out"
    )
    assert dropped_warning("photo", ["a.jpg", "b.jpg"], one, many) == (
        "2 photos could not be decoded (damaged) and were left out: a.jpg and b.jpg"
    )
    with pytest.raises(ValueError, match="at least one name"):
        dropped_warning("photo", [], one, many)


def test_no_other_model_names_the_unplaced_images() -> None:
    unplaced = [f"IMG_{i}.jpg" for i in range(12)]
    assert placement_warning(15, 3, [], unplaced) == (
        "12 of 15 images could not be placed in the model and were left out: "
        "IMG_0.jpg, IMG_1.jpg, IMG_2.jpg, IMG_3.jpg, IMG_4.jpg and 7 more"
    )
    assert placement_warning(15, 14, [0], ["IMG_9.jpg"]) == (
        "1 of 15 images could not be placed in the model and was left out: IMG_9.jpg"
    )
    assert placement_warning(30, 27, [], ["at 1.00 s", "at 2.50 s", "at 9.00 s"], noun="frame") == (
        "3 of 30 frames could not be placed in the model and were left out: "
        "at 1.00 s, at 2.50 s and at 9.00 s"
    )


def test_nothing_to_say_without_other_models_or_unplaced_images() -> None:
    """A model short of images only because of reasons reported elsewhere (e.g. images
    with no features), or whose other models it absorbed, gets no placement warning."""
    assert placement_warning(15, 12, [], []) is None
    assert placement_warning(15, 12, [0, 0], []) is None


def test_one_other_model() -> None:
    assert placement_warning(15, 10, [5], []) == (
        "the images formed 2 separate models that could not be joined; the result uses the "
        "largest, which holds 10 of 15 images (67%); the other model holds 5 images"
    )
    assert placement_warning(4, 3, [1], []) == (
        "the images formed 2 separate models that could not be joined; the result uses the "
        "largest, which holds 3 of 4 images (75%); the other model holds 1 image"
    )


def test_several_other_models_and_unplaced_images() -> None:
    assert placement_warning(20, 9, [3, 5, 0], ["x_1.jpg"]) == (
        "the images formed 3 separate models that could not be joined; the result uses the "
        "largest, which holds 9 of 20 images (45%); the other 2 models hold 5 and 3 images, "
        "and 1 image could not be placed in any model: x_1.jpg"
    )
    assert placement_warning(30, 12, [6, 4, 3], ["a", "b"], noun="frame") == (
        "the frames formed 4 separate models that could not be joined; the result uses the "
        "largest, which holds 12 of 30 frames (40%); the other 3 models hold 6, 4 and 3 "
        "frames, and 2 frames could not be placed in any model: a and b"
    )
