"""HTTP byte ranges and validators for file downloads (RFC 9110, sections 13 and 14).

Only what a download route needs: one byte range per request (a multi-range request is
answered with the whole file, which the RFC allows), a strong ETag, ``If-None-Match`` and
``If-Range``. Pure functions; the route turns their answers into responses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiable(ValueError):
    """A well-formed byte range that starts at or beyond the end of the file (416)."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``first`` to ``last`` of a file, both included (``last < size``)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value of a 206 answer: ``bytes first-last/size``."""
        return f"bytes {self.first}-{self.last}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The byte range to serve for a ``Range`` header on a file of ``size`` bytes.

    ``None`` means "send the whole file": no header, another unit than ``bytes``, a
    malformed value (the RFC says to ignore it), or several ranges. ``bytes=a-b`` is
    clamped to the end of the file, ``bytes=a-`` runs to the end, ``bytes=-n`` is the last
    ``n`` bytes (the whole file when ``n >= size``). Raises :class:`RangeNotSatisfiable`
    when the range starts at or past the end (or asks for the last 0 bytes).
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _SPEC.match(spec)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first_s, last_s = m.group(1), m.group(2)
    if not first_s:  # suffix: the last n bytes
        n = int(last_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(size - n, 0), size - 1)
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid: ignored
    if first >= size:
        raise RangeNotSatisfiable(size)
    last = min(int(last_s), size - 1) if last_s else size - 1
    return ByteRange(first, last)


def strong_etag(sha256_hex: str) -> str:
    """A strong entity tag from the content's SHA-256: ``"<hex>"``."""
    return f'"{sha256_hex}"'


def _tags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` (``*`` matches any): answer 304.

    Uses the weak comparison the RFC prescribes for this header."""
    if not if_none_match:
        return False
    tags = _tags(if_none_match)
    return "*" in tags or etag.removeprefix("W/") in tags


def range_applies(if_range: str | None, etag: str) -> bool:
    """Whether a ``Range`` is honoured given ``If-Range``: absent, or the same strong
    ETag. A date or another tag means the client's copy changed: send the whole file."""
    if not if_range:
        return True
    value = if_range.strip()
    return not value.startswith("W/") and value == etag
