"""``/v1/uploads``: stream a file in, sniff what it is, store it under a generated key.

``POST /v1/uploads`` takes ``multipart/form-data`` with a ``file`` part and an optional
``declared_kind`` field. The body is parsed as it arrives (python-multipart's streaming
parser over ``request.stream()``) into a temp file while bytes are counted, so:

* a ``Content-Length`` above the cap, or a running count above it, answers
  ``413 upload_too_large`` at once, before the rest of the body is read or stored;
  a text field above 64 KiB answers ``413 field_too_large``;
* the temp file is always removed (success, error or client disconnect).

Then the content is sniffed (:mod:`arforge.api.sniff`); the client's ``declared_kind``,
filename extension and part Content-Type are only claims, checked against the sniffed
kind (``415 content_mismatch``). The object key is ``uploads/<id>/original.<sniffed ext>``;
the original filename is never part of a path. It is kept, exactly as sent (UTF-8, any
script, bidi controls and all), in the ``uploads`` row and as object metadata; NUL or
other control characters, an empty name or one over 1024 UTF-8 bytes answer
``400 invalid_filename`` before any file byte is spooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO
from urllib.parse import unquote

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from arforge.shared.settings import Settings
from arforge.shared.storage.base import ObjectStore

from ..deps import Tenant, get_pool, get_settings, get_store, require_tenant
from ..errors import ApiError, error_responses, not_found
from ..sniff import KINDS, SniffError, SniffResult, claimed_kinds, sniff_isolated

log = logging.getLogger("arforge.api.uploads")
router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

TenantDep = Annotated[Tenant, Depends(require_tenant)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # each non-file form field
MAX_PARTS = 16
MAX_PART_HEADER_BYTES = 16 * 1024
FORM_OVERHEAD = 1024 * 1024  # body bytes allowed beyond the file cap (boundaries, fields)
MAX_FILENAME_BYTES = 1024
SPOOL_PREFIX = "arforge-upload-"
_FLUSH = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXT_FILENAME = re.compile(r"filename\*\s*=\s*([A-Za-z0-9_-]+)'[^']*'([^;\s]+)", re.IGNORECASE)
_CLOSE = {"Connection": "close"}


class Upload(BaseModel):
    """An uploaded file. ``kind`` and ``content_type`` come from sniffing its content;
    ``filename`` is the name the client sent, unchanged (display only, never a path)."""

    id: str = Field(examples=["5a1e0f3c-8d7b-4c2a-9e6f-1b2c3d4e5f60"])
    kind: str = Field(examples=["video"], description=f"One of {', '.join(KINDS)}")
    content_type: str = Field(examples=["video/mp4"])
    size: int = Field(examples=[73400320], description="Bytes")
    filename: str | None = Field(examples=["walkaround.mov"])
    sha256: str | None = Field(None, description="Hex SHA-256 of the bytes")
    created_at: datetime


_FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {"type": "string", "format": "binary"},
                        "declared_kind": {"type": "string", "enum": list(KINDS)},
                    },
                }
            }
        },
    }
}


# --------------------------------------------------------------------------------------
# streaming multipart reception


def _human(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def _too_large(cap: int) -> ApiError:
    return ApiError(
        413, "upload_too_large", f"the upload exceeds the limit of {_human(cap)}", headers=_CLOSE
    )


def _bad_multipart(why: str) -> ApiError:
    return ApiError(400, "invalid_multipart", f"invalid multipart/form-data body: {why}")


def _invalid_filename(why: str) -> ApiError:
    return ApiError(400, "invalid_filename", f"invalid filename: {why}")


def disposition_params(value: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """Split a part's Content-Disposition into ``(type, {param: raw bytes})``.

    Quoted values keep their bytes except the two escapes clients use (``\\\\`` and
    ``\\"``); a lone backslash, as browsers send it, stays. Unlike python-multipart's
    ``parse_options_header`` this does not rewrite Windows-looking paths, so the filename
    is exactly what the client sent. The first occurrence of a parameter wins.
    """
    kind, _, rest = value.partition(b";")
    params: dict[bytes, bytes] = {}
    n, pos = len(rest), 0
    while pos < n:
        while pos < n and rest[pos] in b" \t;":
            pos += 1
        eq = rest.find(b"=", pos)
        if eq < 0:
            break
        key = rest[pos:eq].strip().lower()
        pos = eq + 1
        while pos < n and rest[pos] in b" \t":
            pos += 1
        if rest[pos : pos + 1] == b'"':
            pos += 1
            buf = bytearray()
            while pos < n:
                c = rest[pos]
                if c == 0x5C and rest[pos + 1 : pos + 2] in (b"\\", b'"'):
                    buf += rest[pos + 1 : pos + 2]
                    pos += 2
                    continue
                pos += 1
                if c == 0x22:
                    break
                buf.append(c)
            val = bytes(buf)
        else:
            end = rest.find(b";", pos)
            end = n if end < 0 else end
            val, pos = rest[pos:end].strip(), end
        params.setdefault(key, val)
    return kind.strip().lower(), params


def decode_filename(disposition: bytes) -> str | None:
    """The ``filename`` of a Content-Disposition header value as text, or ``None``.

    Browsers and HTTP libraries send the name as raw UTF-8 inside quotes (RFC 7578 /
    HTML); RFC 5987 ``filename*=UTF-8''...`` is honoured when no plain ``filename`` is
    present. Names that are not UTF-8 are read as Latin-1.
    """
    _, opts = disposition_params(disposition)
    raw = opts.get(b"filename")
    if raw is None:
        m = _EXT_FILENAME.search(disposition.decode("latin-1"))
        if not m:
            return None
        charset = m.group(1).lower()
        try:
            return unquote(m.group(2), encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            return unquote(m.group(2), encoding="latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def check_filename(name: str | None) -> str:
    """Return ``name`` unchanged if acceptable as display metadata; else 400
    ``invalid_filename`` (missing/empty/blank, NUL or control characters, > 1024 bytes)."""
    if name is None or not name.strip():
        raise _invalid_filename("the file part needs a non-empty filename")
    if "\x00" in name:
        raise _invalid_filename("it contains a NUL character")
    if _CONTROL.search(name):
        raise _invalid_filename("it contains control characters")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise _invalid_filename(f"it is longer than {MAX_FILENAME_BYTES} UTF-8 bytes")
    return name


class _Form:
    """State of one streaming multipart parse: text fields in memory (capped), the file
    part written to a temp file (capped), hashed while it streams."""

    def __init__(self, spool_dir: str | None, max_file: int) -> None:
        self.spool_dir = spool_dir
        self.max_file = max_file
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_ctype: str | None = None
        self.file_path: Path | None = None
        self.file_size = 0
        self.file_done = False
        self.sha = hashlib.sha256()
        self.pending = bytearray()
        self.ended = False
        self._fh: BinaryIO | None = None
        self._parts = 0
        self._headers: dict[str, bytes] = {}
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._hbytes = 0
        self._name: str | None = None
        self._is_file = False
        self._field = bytearray()

    # python-multipart callbacks (they run inside parser.write) ------------------------

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise _bad_multipart(f"more than {MAX_PARTS} parts")
        self._headers, self._hbytes = {}, 0
        self._name, self._is_file = None, False
        self._field.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._hvalue += data[start:end]

    def _count_header(self, n: int) -> None:
        self._hbytes += n
        if self._hbytes > MAX_PART_HEADER_BYTES:
            raise _bad_multipart(f"part headers over {MAX_PART_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        self._headers[self._hname.decode("latin-1").strip().lower()] = bytes(self._hvalue).strip()
        self._hname.clear()
        self._hvalue.clear()

    def on_headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition", b"")
        kind, opts = disposition_params(disposition)
        if kind != b"form-data" or b"name" not in opts:
            raise _bad_multipart("a part has no Content-Disposition form-data name")
        self._name = opts[b"name"].decode("utf-8", "replace")
        if self._name != FILE_FIELD:
            return
        if self.file_path is not None:
            raise _bad_multipart(f"more than one {FILE_FIELD!r} part")
        self.filename = check_filename(decode_filename(disposition))
        self.file_ctype = self._headers.get("content-type", b"").decode("latin-1") or None
        self._is_file = True
        fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=self.spool_dir)
        self.file_path = Path(name)
        self._fh = os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._is_file:
            self.file_size += n
            if self.file_size > self.max_file:
                raise _too_large(self.max_file)
            chunk = data[start:end]
            self.sha.update(chunk)
            self.pending += chunk
        else:
            if len(self._field) + n > MAX_FIELD_BYTES:
                raise ApiError(
                    413,
                    "field_too_large",
                    f"form field {self._name!r} exceeds {MAX_FIELD_BYTES // 1024} KiB",
                    headers=_CLOSE,
                )
            self._field += data[start:end]

    def on_part_end(self) -> None:
        if self._is_file:
            self.file_done = True
        elif self._name is not None:
            self.fields[self._name] = self._field.decode("utf-8", "replace")

    def on_end(self) -> None:
        self.ended = True

    # file handling -------------------------------------------------------------------

    async def flush(self, force: bool = False) -> None:
        if self._fh is not None and self.pending and (force or len(self.pending) >= _FLUSH):
            data = bytes(self.pending)
            self.pending.clear()
            await asyncio.to_thread(self._fh.write, data)

    async def close_file(self) -> None:
        await self.flush(force=True)
        if self._fh is not None:
            fh, self._fh = self._fh, None
            await asyncio.to_thread(fh.close)

    def discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self.file_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.file_path.unlink()


def _boundary(request: Request) -> bytes:
    ctype, opts = parse_options_header(request.headers.get("content-type", "").encode("latin-1"))
    if ctype != b"multipart/form-data":
        raise _bad_multipart("send multipart/form-data with the file in a part named 'file'")
    boundary = opts.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise _bad_multipart("missing or invalid boundary")
    return boundary


async def receive_form(request: Request, max_file: int, spool_dir: str | None = None) -> _Form:
    """Parse the multipart body as it streams in. On any error the temp file is removed
    and an :class:`ApiError` is raised; on success the caller owns ``form.file_path``."""
    boundary = _boundary(request)
    body_cap = max_file + FORM_OVERHEAD
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "invalid_request", "invalid Content-Length header")
        if int(length) > body_cap:
            raise _too_large(max_file)
    form = _Form(spool_dir, max_file)
    parser = MultipartParser(
        boundary,
        callbacks={  # type: ignore[arg-type]
            "on_part_begin": form.on_part_begin,
            "on_header_field": form.on_header_field,
            "on_header_value": form.on_header_value,
            "on_header_end": form.on_header_end,
            "on_headers_finished": form.on_headers_finished,
            "on_part_data": form.on_part_data,
            "on_part_end": form.on_part_end,
            "on_end": form.on_end,
        },
    )
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > body_cap:
                raise _too_large(max_file)
            parser.write(chunk)
            await form.flush()
            if form.ended:
                break
        parser.finalize()
        await form.close_file()
    except MultipartParseError as e:
        form.discard()
        raise _bad_multipart(str(e) or "malformed body") from None
    except BaseException:  # ApiError, ClientDisconnect, cancellation
        form.discard()
        raise
    if not form.ended:
        form.discard()
        raise _bad_multipart("the body ended before the closing boundary (upload cut short?)")
    if form.file_path is None or not form.file_done:
        form.discard()
        raise ApiError(
            400, "missing_file", f"send the file in a multipart part named {FILE_FIELD!r}"
        )
    return form


# --------------------------------------------------------------------------------------
# routes


def _check_claims(result: SniffResult, declared: str | None, form: _Form) -> None:
    claims = claimed_kinds(form.filename, form.file_ctype)
    if declared is not None:
        claims.insert(0, (declared, "declared_kind"))
    for kind, source in claims:
        if kind != result.kind:
            fmt = result.details.get("format") or result.ext
            raise ApiError(
                415,
                "content_mismatch",
                f"the upload claims to be {kind} ({source}) but its content is "
                f"{result.kind} ({fmt}, {result.content_type})",
            )


def _row_to_upload(row: Any) -> Upload:
    return Upload(
        id=str(row["id"]),
        kind=row["kind"],
        content_type=row["content_type"],
        size=row["size"],
        filename=row["filename"],
        sha256=row["sha256"],
        created_at=row["created_at"],
    )


_COLUMNS = "id, kind, content_type, size, filename, sha256, created_at"


@router.post(
    "",
    status_code=201,
    response_model=Upload,
    summary="Upload a video, photos (zip), image or 3D model",
    description=(
        "Multipart form with a `file` part (and optionally `declared_kind`). The body is "
        "streamed to disk with a size cap; the kind is sniffed from the bytes, never taken "
        "from the filename or Content-Type. Errors: 413 `upload_too_large` / "
        "`field_too_large`; 415 `unsupported_media_type`, `content_mismatch`, "
        "`unsupported_codec`; 400 `empty_file`, `invalid_filename`, `missing_file`, "
        "`invalid_multipart`; 422 `no_video_stream`, `corrupt_container`, `corrupt_file`, "
        "`unsafe_archive`."
    ),
    responses=error_responses(400, 401, 413, 415, 422),
    openapi_extra=_FORM_SCHEMA,
)
async def create_upload(
    request: Request,
    tenant: TenantDep,
    pool: PoolDep,
    store: StoreDep,
    settings: SettingsDep,
) -> Upload:
    """Receive, sniff and store one file; 201 with the upload record."""
    form = await receive_form(request, settings.max_upload_bytes)
    assert form.file_path is not None
    try:
        declared = form.fields.get("declared_kind") or None
        if declared is not None and declared not in KINDS:
            raise ApiError(
                422,
                "invalid_declared_kind",
                f"declared_kind {declared!r} is not one of {', '.join(KINDS)}",
            )
        if form.file_size == 0:
            raise ApiError(400, "empty_file", "the uploaded file is empty (0 bytes)")
        try:
            result = await sniff_isolated(form.file_path)
        except SniffError as e:
            raise ApiError(e.status, e.code, e.message) from None
        _check_claims(result, declared, form)

        upload_id = uuid.uuid4()
        key = f"uploads/{upload_id}/original.{result.ext}"
        assert form.filename is not None
        await store.put_file(
            key,
            form.file_path,
            content_type=result.content_type,
            metadata={"filename": form.filename, "upload-id": str(upload_id)},
        )
        try:
            row = await pool.fetchrow(
                "INSERT INTO uploads (id, tenant_id, key, kind, content_type, size, filename,"
                " sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                f" RETURNING {_COLUMNS}",
                upload_id,
                uuid.UUID(tenant.id),
                key,
                result.kind,
                result.content_type,
                form.file_size,
                form.filename,
                form.sha.hexdigest(),
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await store.delete_prefix(f"uploads/{upload_id}/")
            raise
    finally:
        form.discard()
    log.info(
        "upload stored",
        extra={"upload_id": str(upload_id), "kind": result.kind, "size": form.file_size},
    )
    return _row_to_upload(row)


@router.get(
    "/{upload_id}",
    response_model=Upload,
    summary="An upload's record",
    responses=error_responses(401, 404),
)
async def get_upload(upload_id: str, tenant: TenantDep, pool: PoolDep) -> Upload:
    """The caller's upload; 404 ``not_found`` for unknown ids and other tenants' uploads."""
    try:
        uid = uuid.UUID(upload_id)
    except ValueError:
        raise not_found("upload") from None
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM uploads WHERE id = $1 AND tenant_id = $2",
        uid,
        uuid.UUID(tenant.id),
    )
    if row is None:
        raise not_found("upload")
    return _row_to_upload(row)
