"""Serving a file from local storage as a download: ranges, validators, HEAD.

The route decides which file and what it is called; this answers 200, 206, 304 or 416
(as the standard JSON error) with ``ETag``, ``Last-Modified``, ``Accept-Ranges`` and
``Content-Disposition``. AR Quick Look and download managers fetch big USDZ / GLB / PLY
files in ranges and revalidate them with the ETag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import anyio
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from .errors import error_json
from .ranges import RangeNotSatisfiable, not_modified, parse_range, range_applies

CHUNK = 1 << 20


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` (RFC 6266; ``filename*`` when it is not plain ASCII)."""
    quoted = quote(filename)
    if quoted == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quoted}"


async def _read(path: Path, first: int, length: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(first)
        left = length
        while left > 0:
            chunk = await f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def file_download(
    request: Request, path: Path, *, etag: str, media_type: str, filename: str
) -> Response:
    """The response to a GET or HEAD of ``path`` (see the module docstring).

    ``etag`` must be a strong tag of the content (see :func:`.ranges.strong_etag`).
    """
    st = path.stat()
    size = st.st_size
    headers = {
        "ETag": etag,
        "Last-Modified": formatdate(st.st_mtime, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(filename),
    }
    if not_modified(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    rng = None
    if range_applies(request.headers.get("if-range"), etag):
        try:
            rng = parse_range(request.headers.get("range"), size)
        except RangeNotSatisfiable:
            return error_json(
                416,
                "range_not_satisfiable",
                f"the requested range starts beyond the end of the file ({size} bytes)",
                headers={"Content-Range": f"bytes */{size}"},
            )
    first, length, status = 0, size, 200
    if rng is not None:
        first, length, status = rng.first, rng.length, 206
        headers["Content-Range"] = rng.content_range(size)
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        _read(path, first, length), status_code=status, headers=headers, media_type=media_type
    )
