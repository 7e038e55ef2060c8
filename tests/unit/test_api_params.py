"""Strict validation of job params in the API (no services needed)."""

from __future__ import annotations

import pytest

from arforge.api.errors import ApiError
from arforge.api.models import JobCreate
from arforge.api.routes.jobs import _validate_params
from arforge.api.testing import all_implemented

REG = all_implemented()


def check(type_: str, params: dict) -> dict:
    return _validate_params(REG, JobCreate(type=type_, params=params))


def rejected(type_: str, params: dict) -> list[list]:
    with pytest.raises(ApiError) as info:
        check(type_, params)
    assert info.value.status == 422 and info.value.code == "validation_error"
    return [f["loc"] for f in info.value.fields or []]


def test_booleans_and_strings_are_not_integers() -> None:
    assert rejected("photogrammetry", {"max_frames": True}) == [["body", "params", "max_frames"]]
    assert rejected("photogrammetry", {"max_frames": "60"}) == [["body", "params", "max_frames"]]
    assert rejected("ai-generation", {"prompt": "x", "steps": False}) == [
        ["body", "params", "steps"]
    ]
    assert rejected("ai-generation", {"prompt": "x", "guidance_scale": "7"}) == [
        ["body", "params", "guidance_scale"]
    ]


def test_integers_are_floats_and_enums_take_their_strings() -> None:
    got = check("ai-generation", {"prompt": "x", "guidance_scale": 7, "strength": 1})
    assert got["guidance_scale"] == 7.0 and got["strength"] == 1.0
    assert check("mesh", {"lod_ratios": [1, 0.5, 0]})["lod_ratios"] == [1.0, 0.5, 0.0]
    got = check("photogrammetry", {"quality": "draft", "max_frames": 60})
    assert (got["quality"], got["max_frames"]) == ("draft", 60)
