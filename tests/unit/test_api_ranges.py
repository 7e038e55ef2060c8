"""Byte ranges and validators of file downloads (RFC 9110)."""

from __future__ import annotations

import pytest

from arforge.api.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    not_modified,
    parse_range,
    range_applies,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=10-19", ByteRange(10, 19)),
        ("BYTES = 10 - 19", ByteRange(10, 19)),
        ("bytes=90-", ByteRange(90, 99)),
        ("bytes=90-5000", ByteRange(90, 99)),
        ("bytes=-1", ByteRange(99, 99)),
        ("bytes=-500", ByteRange(0, 99)),  # a suffix longer than the file: all of it
        (None, None),
        ("", None),
        ("bytes=", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("bytes=20-10", None),  # reversed: invalid, ignored
        ("bytes=0-1,4-5", None),  # several ranges: the whole file
        ("items=0-1", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0)]
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_content_range_and_length() -> None:
    r = ByteRange(4, 131)
    assert (r.length, r.content_range(1028)) == (128, "bytes 4-131/1028")


def test_validators() -> None:
    tag = '"abc"'
    assert not_modified('"abc"', tag) and not_modified('"x", W/"abc"', tag)
    assert not_modified("*", tag) and not not_modified('"abd"', tag)
    assert not not_modified(None, tag)
    assert range_applies(None, tag) and range_applies('"abc"', tag)
    assert not range_applies('W/"abc"', tag)  # If-Range needs a strong match
    assert not range_applies("Sat, 29 Nov 2026 10:00:00 GMT", tag)
