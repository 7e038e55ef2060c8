"""Content sniffing for uploads: what a file *is*, from its bytes only.

The filename and the client's Content-Type are never consulted here (the upload route
compares them with the result afterwards). Detection is two-step: magic bytes pick a
candidate format, then a probe confirms it can actually be used:

=========== ============================================ =====================================
kind        magic                                        probe
=========== ============================================ =====================================
video       ISO BMFF ``ftyp`` (mp4/mov/3gp), bare QT      top-level box walk (``moov`` present?
            atoms, EBML DocType matroska/webm            truncated?), then PyAV: a video stream,
                                                         a decoder for its codec, one frame
image       JPEG ``FFD8FF``, PNG, RIFF/WEBP, ``ftyp``     Pillow header read (HEIC/AVIF: brand)
            heic/heix/mif1/avif brands
images_zip  ``PK\\x03\\x04`` whose entries are images    entry names, declared sizes, ratios,
                                                         overlap; first bytes of every entry
usdz        ``PK\\x03\\x04``, first entry .usd/.usda/.usdc stored (uncompressed) entries
glb         ``glTF`` + version 2                         declared length, JSON chunk asset.version
gltf        JSON object                                  ``asset.version``; no external URIs
ply         ``ply\\n``                                   header format line and ``end_header``
=========== ============================================ =====================================

Formats: ISO/IEC 14496-12 (ISO BMFF boxes), the Matroska EBML spec (RFC 8794), the glTF 2.0
specification (GLB header), the USDZ file-format specification (zip, first file is the
root layer, stored entries), APPNOTE.TXT (zip).

:func:`sniff` raises :class:`SniffError` with a machine-readable ``code``:
``empty_file``, ``unsupported_media_type``, ``no_video_stream``, ``corrupt_container``,
``unsupported_codec``, ``corrupt_file``, ``unsafe_archive``, ``image_too_large``,
``gltf_external_resources``. ``SniffError.status`` is the HTTP status to answer with.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing as mp
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO

from arforge.shared.contracts.uploads import kind_for_extension

KINDS = ("video", "image", "images_zip", "glb", "gltf", "usdz", "ply")

# Limits for archives (declared sizes are checked before anything is decompressed).
MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_UNCOMPRESSED = 16 * 1024**3
MAX_ZIP_RATIO = 100  # uncompressed/compressed per entry; photos barely compress
MAX_JSON_BYTES = 64 * 1024**2
MAX_PROBE_PACKETS = 500

_STATUS = {
    "empty_file": 400,
    "unsupported_media_type": 415,
    "unsupported_codec": 415,
    "no_video_stream": 422,
    "corrupt_container": 422,
    "corrupt_file": 422,
    "unsafe_archive": 422,
    "image_too_large": 422,
    "gltf_external_resources": 422,
}


class SniffError(Exception):
    """The file cannot be accepted; ``code`` is machine-readable, ``message`` is for people."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (SniffError, (self.code, self.message, self.details))

    @property
    def status(self) -> int:
        """HTTP status for this error (400, 415 or 422)."""
        return _STATUS.get(self.code, 422)


@dataclass(frozen=True)
class SniffResult:
    """What the file is: ``kind`` (one of :data:`KINDS`), the server's ``content_type`` and
    file extension ``ext`` (no dot), plus format ``details`` (codec, width, height, ...)."""

    kind: str
    content_type: str
    ext: str
    details: dict[str, Any] = field(default_factory=dict)


def _unsupported(what: str = "") -> SniffError:
    msg = "the file's content is not a supported video, image, photo zip or 3D model"
    if what:
        msg += f" (it looks like {what})"
    return SniffError("unsupported_media_type", msg)


# --------------------------------------------------------------------------------------
# entry point


def sniff(path: Path) -> SniffResult:
    """Identify the file at ``path`` by content. Blocking (file I/O, PyAV); run it in a thread.

    Returns a :class:`SniffResult`; raises :class:`SniffError`.
    """
    size = path.stat().st_size
    if size == 0:
        raise SniffError("empty_file", "the uploaded file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(4096)
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_iso_bmff(path, head, size)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _sniff_matroska(path, head)
    if head.startswith(b"\xff\xd8\xff"):
        return _sniff_pillow(path, "jpeg", "image/jpeg", "jpg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _sniff_pillow(path, "png", "image/png", "png")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _sniff_pillow(path, "webp", "image/webp", "webp")
    if head.startswith(b"glTF"):
        return _sniff_glb(path, head, size)
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(path, size)
    if head.startswith((b"PK\x05\x06", b"PK\x07\x08")):
        raise SniffError("corrupt_file", "the zip archive is empty or spanned")
    if head.startswith((b"ply\n", b"ply\r\n")):
        return _sniff_ply(head)
    if _looks_like_quicktime(head, size):
        return _sniff_iso_bmff(path, head, size)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return _sniff_gltf(path, size)
    if text[:15].lower().startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        raise _unsupported("an HTML page")
    if text.startswith(b"<"):
        raise _unsupported("XML or HTML text")
    raise _unsupported()


# --------------------------------------------------------------------------------------
# isolation: FFmpeg and Pillow parse hostile bytes, so the API probes in a child process

_preloaded = False


def _child(fn: Callable[[Path], SniffResult], path: str, conn: Connection) -> None:
    try:
        conn.send(("ok", fn(Path(path))))
    except SniffError as e:
        conn.send(("error", e))
    except Exception as e:
        conn.send(("error", SniffError("corrupt_file", f"the file could not be analysed ({e})")))
    finally:
        conn.close()


async def sniff_isolated(
    path: Path, *, timeout_s: float = 120.0, fn: Callable[[Path], SniffResult] | None = None
) -> SniffResult:
    """Run :func:`sniff` (or ``fn``) on ``path`` in a child process (multiprocessing
    ``forkserver``, with this module, PyAV and Pillow preloaded), so a decoder crash or a
    pathological file cannot take the API process down or hang it.

    A child that dies (e.g. SIGSEGV in FFmpeg) -> ``SniffError("corrupt_file")``; one that
    runs past ``timeout_s`` is killed -> ``SniffError("corrupt_file")``. ``fn`` must be
    importable (module level); it exists for tests.
    """
    global _preloaded
    ctx = mp.get_context("forkserver")
    if not _preloaded:
        ctx.set_forkserver_preload(["arforge.api.sniff", "av", "PIL.Image"])
        _preloaded = True
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn or sniff, str(path), send), daemon=True)
    await asyncio.to_thread(proc.start)
    send.close()
    try:
        ready = await asyncio.to_thread(recv.poll, timeout_s)
        if not ready:
            raise SniffError(
                "corrupt_file", f"the file could not be analysed within {timeout_s:g} s"
            )
        try:
            status, value = recv.recv()
        except EOFError:
            await asyncio.to_thread(proc.join, 5)
            raise SniffError(
                "corrupt_file",
                f"the decoder crashed while reading the file (exit code {proc.exitcode})",
            ) from None
    finally:
        if proc.is_alive():
            proc.kill()
        await asyncio.to_thread(proc.join, 5)
        recv.close()
    if status == "ok":
        return value  # type: ignore[no-any-return]
    raise value


# --------------------------------------------------------------------------------------
# ISO BMFF: mp4 / mov / 3gp / heic / avif

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def _looks_like_quicktime(head: bytes, size: int) -> bool:
    """Old QuickTime files have no ``ftyp``: a plausible first atom of a known type."""
    if len(head) < 16 or head[4:8] not in _QT_ATOMS:
        return False
    n = int.from_bytes(head[:4], "big")
    return n == 0 or n == 1 or 8 <= n <= size


def _brands(head: bytes) -> tuple[bytes, set[bytes]]:
    box = min(int.from_bytes(head[:4], "big"), len(head))
    major = head[8:12]
    compat = {head[i : i + 4] for i in range(16, box - 3, 4)}
    return major, compat | {major}


def _sniff_iso_bmff(path: Path, head: bytes, size: int) -> SniffResult:
    major, brands = (b"qt  ", {b"qt  "}) if head[4:8] != b"ftyp" else _brands(head)
    if major in _HEIC_BRANDS or (major in _HEIF_BRANDS and brands & _HEIC_BRANDS):
        return SniffResult("image", "image/heic", "heic", {"format": "heic", "brand": _b(major)})
    if major in _AVIF_BRANDS or (major in _HEIF_BRANDS and brands & _AVIF_BRANDS):
        return SniffResult("image", "image/avif", "avif", {"format": "avif", "brand": _b(major)})
    if major in _HEIF_BRANDS:
        return SniffResult("image", "image/heif", "heif", {"format": "heif", "brand": _b(major)})
    if major == b"crx ":
        raise _unsupported("a Canon raw photo")
    if major == b"qt  ":
        ctype, ext = "video/quicktime", "mov"
    elif major.startswith(b"3g2"):
        ctype, ext = "video/3gpp2", "3g2"
    elif major.startswith(b"3gp"):
        ctype, ext = "video/3gpp", "3gp"
    else:
        ctype, ext = "video/mp4", "mp4"
    with open(path, "rb") as f:
        boxes, truncated, clean = _top_level_boxes(f, size)
    types = [t for t, _, _ in boxes]
    if clean and b"moov" not in types:
        hint = " - the upload looks incomplete" if truncated else ""
        raise SniffError(
            "corrupt_container",
            f"the {ext} file has no 'moov' index box{hint} (was it cut short, or is it "
            "still being recorded?)",
            {"boxes": [_b(t) for t in types[:16]], "truncated": truncated},
        )
    details = _probe_video(path, ext)
    details["brand"] = _b(major)
    details["truncated"] = truncated
    return SniffResult("video", ctype, ext, details)


def _b(v: bytes) -> str:
    return v.decode("latin-1").strip()


def _top_level_boxes(f: BinaryIO, size: int) -> tuple[list[tuple[bytes, int, int]], bool, bool]:
    """Walk top-level ISO BMFF boxes: ``(boxes [(type, offset, size)], truncated, clean)``.

    ``truncated``: the last box claims more bytes than the file has. ``clean``: the walk
    only met well-formed box headers (otherwise the caller leaves judgement to FFmpeg).
    """
    boxes: list[tuple[bytes, int, int]] = []
    pos = 0
    while pos + 8 <= size and len(boxes) < 4096:
        f.seek(pos)
        hdr = f.read(16)
        n, typ = int.from_bytes(hdr[:4], "big"), hdr[4:8]
        if not all(0x20 <= c < 0x7F for c in typ):
            return boxes, False, False
        if n == 1:
            if len(hdr) < 16:
                return boxes, True, True
            n = int.from_bytes(hdr[8:16], "big")
        elif n == 0:
            n = size - pos
        if n < 8:
            return boxes, False, False
        boxes.append((typ, pos, n))
        if pos + n > size:
            return boxes, True, True
        pos += n
    return boxes, False, True


# --------------------------------------------------------------------------------------
# Matroska / WebM


def _ebml_vint(buf: bytes, i: int, *, keep_marker: bool) -> tuple[int, int]:
    """Read an EBML variable-length integer at ``buf[i]``: ``(value, next index)``."""
    first = buf[i]
    length = 1
    mask = 0x80
    while length <= 8 and not first & mask:
        mask >>= 1
        length += 1
    if length > 8 or i + length > len(buf):
        raise ValueError("bad EBML varint")
    value = first if keep_marker else first & (mask - 1)
    for b in buf[i + 1 : i + length]:
        value = (value << 8) | b
    return value, i + length


def _ebml_doctype(head: bytes) -> str | None:
    """The DocType string from the EBML header (element 0x4282), or ``None``."""
    try:
        _, i = _ebml_vint(head, 0, keep_marker=True)  # EBML element id 0x1A45DFA3
        hsize, i = _ebml_vint(head, i, keep_marker=False)
        end = min(i + hsize, len(head))
        while i < end:
            eid, i = _ebml_vint(head, i, keep_marker=True)
            esize, i = _ebml_vint(head, i, keep_marker=False)
            if eid == 0x4282:
                return head[i : i + esize].rstrip(b"\x00").decode("ascii", "replace")
            i += esize
    except (ValueError, IndexError):
        return None
    return None


def _sniff_matroska(path: Path, head: bytes) -> SniffResult:
    doctype = _ebml_doctype(head)
    if doctype == "webm":
        ctype, ext = "video/webm", "webm"
    elif doctype == "matroska":
        ctype, ext = "video/x-matroska", "mkv"
    else:
        raise _unsupported(f"an EBML document of type {doctype!r}")
    details = _probe_video(path, ext)
    details["doctype"] = doctype
    return SniffResult("video", ctype, ext, details)


# --------------------------------------------------------------------------------------
# the PyAV probe


def _probe_video(path: Path, ext: str) -> dict[str, Any]:
    """Open with PyAV (FFmpeg): there must be a video stream with a decoder, and its first
    frame must decode. Returns container/codec/size/duration/frame-rate details."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as e:
        raise SniffError(
            "corrupt_container",
            f"the {ext} container could not be read ({_ff(e)}); was the upload cut short?",
        ) from e
    with container:
        videos = [
            s
            for s in container.streams.video
            if not s.disposition & av.stream.Disposition.attached_pic
        ]
        audio = len(container.streams.audio)
        if not videos:
            what = f"{audio} audio stream(s)" if audio else "no audio or video streams"
            raise SniffError(
                "no_video_stream",
                f"the {ext} file has no video stream ({what}); upload a video of the object",
                {"audio_streams": audio},
            )
        stream = videos[0]
        ctx = stream.codec_context
        if ctx is None:
            raise SniffError(
                "unsupported_codec",
                f"the {ext} file's video codec has no decoder on this server; "
                "re-encode it as H.264 or HEVC",
            )
        details: dict[str, Any] = {
            "container": container.format.name,
            "codec": ctx.name,
            "width": int(ctx.width or 0),
            "height": int(ctx.height or 0),
            "frames": int(stream.frames or 0),
            "fps": float(stream.average_rate) if stream.average_rate else None,
            "duration_s": _duration(container, stream),
            "audio_streams": audio,
        }
        if details["width"] <= 0 or details["height"] <= 0:
            raise SniffError(
                "corrupt_container", f"the {ext} video stream has no frame size", details
            )
        try:
            decoded = _first_frame(container, stream)
        except av.error.DecoderNotFoundError as e:
            raise SniffError(
                "unsupported_codec",
                f"no decoder for the {ctx.name} video codec on this server",
                details,
            ) from e
        except av.FFmpegError as e:
            raise SniffError(
                "corrupt_container",
                f"the first video frame could not be decoded ({_ff(e)})",
                details,
            ) from e
        if not decoded:
            raise SniffError(
                "corrupt_container",
                "no video frame could be decoded; was the upload cut short?",
                details,
            )
    return details


def _first_frame(container: Any, stream: Any) -> bool:
    for n, packet in enumerate(container.demux(stream)):
        if packet.decode():
            return True
        if n >= MAX_PROBE_PACKETS:
            break
    return False


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base:
        return round(float(stream.duration * stream.time_base), 3)
    if container.duration:
        return round(container.duration / 1_000_000, 3)
    return None


def _ff(e: Exception) -> str:
    return str(getattr(e, "strerror", None) or e)


# --------------------------------------------------------------------------------------
# still images


def _sniff_pillow(path: Path, fmt: str, ctype: str, ext: str) -> SniffResult:
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            im.verify()
    except Image.DecompressionBombError as e:
        raise SniffError("image_too_large", f"the {fmt} image has too many pixels ({e})") from e
    except Exception as e:  # Pillow raises a variety of errors on damaged files
        raise SniffError("corrupt_file", f"the {fmt} image could not be read ({e})") from e
    return SniffResult("image", ctype, ext, {"format": fmt, "width": width, "height": height})


def image_format(prefix: bytes) -> str | None:
    """``jpeg``/``png``/``webp``/``heic``/``heif``/``avif`` from a file's first 32 bytes."""
    if prefix.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if prefix.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        return "webp"
    if len(prefix) >= 12 and prefix[4:8] == b"ftyp":
        major, brands = _brands(prefix)
        if major in _HEIC_BRANDS or (major in _HEIF_BRANDS and brands & _HEIC_BRANDS):
            return "heic"
        if major in _AVIF_BRANDS or (major in _HEIF_BRANDS and brands & _AVIF_BRANDS):
            return "avif"
        if major in _HEIF_BRANDS:
            return "heif"
    return None


# --------------------------------------------------------------------------------------
# zip: photo archives and USDZ

_JUNK_DIRS = ("__MACOSX/",)
_JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _is_junk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return name.startswith(_JUNK_DIRS) or base in _JUNK_NAMES or base.startswith("._")


def _unsafe_name(name: str) -> bool:
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return True
    if len(name) >= 2 and name[1] == ":":  # drive letter
        return True
    return any(p in ("..",) for p in name.split("/"))


def _sniff_zip(path: Path, size: int) -> SniffResult:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise SniffError(
            "corrupt_file", f"the zip archive could not be read ({e}); was it cut short?"
        ) from e
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise SniffError(
                "unsafe_archive", f"the zip has {len(infos)} entries (limit {MAX_ZIP_ENTRIES})"
            )
        _check_zip_safety(infos, size)
        files = [i for i in infos if not i.is_dir()]
        if files and files[0].filename.lower().endswith((".usd", ".usda", ".usdc")):
            return _usdz(files)
        return _images_zip(zf, files)


def _check_zip_safety(infos: list[zipfile.ZipInfo], size: int) -> None:
    """Refuse path-traversal names, zip bombs (declared sizes and ratios) and overlapping
    entries, all from the central directory before anything is decompressed."""
    total = 0
    for info in infos:
        if _unsafe_name(info.filename):
            raise SniffError("unsafe_archive", f"zip entry {info.filename!r} has an unsafe path")
        if info.flag_bits & 0x1:
            raise SniffError("unsupported_media_type", "encrypted zip archives are not supported")
        total += info.file_size
        if info.file_size > 1024 * 1024 and info.file_size > MAX_ZIP_RATIO * max(
            info.compress_size, 1
        ):
            raise SniffError(
                "unsafe_archive",
                f"zip entry {info.filename!r} expands {info.compress_size} bytes to "
                f"{info.file_size} (ratio limit {MAX_ZIP_RATIO})",
            )
    if total > MAX_ZIP_UNCOMPRESSED:
        raise SniffError(
            "unsafe_archive",
            f"the zip declares {total} uncompressed bytes (limit {MAX_ZIP_UNCOMPRESSED})",
        )
    # Overlapping entries (one compressed stream referenced many times) is the classic
    # non-recursive zip bomb: the entries' compressed ranges must be disjoint.
    spans = sorted((i.header_offset, i.compress_size + 30 + len(i.orig_filename)) for i in infos)
    for (off_a, len_a), (off_b, _) in itertools.pairwise(spans):
        if off_a + len_a > off_b:
            raise SniffError("unsafe_archive", "zip entries overlap (a zip bomb?)")
    if spans and spans[-1][0] + spans[-1][1] > size:
        raise SniffError("corrupt_file", "a zip entry extends past the end of the archive")


def _usdz(files: list[zipfile.ZipInfo]) -> SniffResult:
    compressed = [i.filename for i in files if i.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise SniffError(
            "corrupt_file",
            f"USDZ entries must be stored uncompressed; {compressed[0]!r} is compressed",
        )
    return SniffResult(
        "usdz",
        "model/vnd.usdz+zip",
        "usdz",
        {"root_layer": files[0].filename, "entries": len(files)},
    )


def _images_zip(zf: zipfile.ZipFile, files: list[zipfile.ZipInfo]) -> SniffResult:
    formats: dict[str, int] = {}
    total = 0
    for info in files:
        if _is_junk(info.filename):
            continue
        try:
            with zf.open(info) as member:
                prefix = member.read(32)
        except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError) as e:
            raise SniffError(
                "corrupt_file", f"zip entry {info.filename!r} could not be read ({e})"
            ) from e
        fmt = image_format(prefix)
        if fmt is None:
            raise SniffError(
                "unsupported_media_type",
                f"zip entry {info.filename!r} is not an image; a photo zip may only "
                "contain JPEG, PNG, WebP or HEIC files",
                {"entry": info.filename},
            )
        formats[fmt] = formats.get(fmt, 0) + 1
        total += info.file_size
    n = sum(formats.values())
    if n == 0:
        raise SniffError("unsupported_media_type", "the zip archive contains no images")
    return SniffResult(
        "images_zip",
        "application/zip",
        "zip",
        {"images": n, "formats": formats, "uncompressed_bytes": total},
    )


# --------------------------------------------------------------------------------------
# 3D models


def _sniff_glb(path: Path, head: bytes, size: int) -> SniffResult:
    if len(head) < 20:
        raise SniffError("corrupt_file", "the GLB file is shorter than its header")
    _, version, length = struct.unpack_from("<4sII", head, 0)
    if version != 2:
        raise _unsupported(f"a glTF binary version {version}; only glTF 2.0 is supported")
    if length != size:
        raise SniffError(
            "corrupt_file",
            f"the GLB header declares {length} bytes but the file has {size}; "
            "was the upload cut short?",
        )
    chunk_len, chunk_type = struct.unpack_from("<II", head, 12)
    if chunk_type != 0x4E4F534A or 20 + chunk_len > size:  # 'JSON'
        raise SniffError("corrupt_file", "the GLB file has no valid JSON chunk")
    if chunk_len > MAX_JSON_BYTES:
        raise SniffError("corrupt_file", f"the GLB JSON chunk is too large ({chunk_len} bytes)")
    with open(path, "rb") as f:
        f.seek(20)
        doc = _json_object(f.read(chunk_len), "GLB JSON chunk")
    version_str = _asset_version(doc, "GLB")
    return SniffResult(
        "glb",
        "model/gltf-binary",
        "glb",
        {"version": version_str, **_gltf_counts(doc)},
    )


def _sniff_gltf(path: Path, size: int) -> SniffResult:
    if size > MAX_JSON_BYTES:
        raise _unsupported(f"a JSON document of {size} bytes (glTF JSON limit {MAX_JSON_BYTES})")
    doc = _json_object(path.read_bytes(), "JSON file", not_gltf=True)
    if "asset" not in doc:
        raise _unsupported("a JSON document that is not glTF (no 'asset')")
    version_str = _asset_version(doc, "glTF")
    external = sorted(
        {
            str(item.get("uri"))
            for key in ("buffers", "images")
            for item in doc.get(key) or []
            if isinstance(item, dict)
            and item.get("uri")
            and not str(item["uri"]).startswith("data:")
        }
    )
    if external:
        raise SniffError(
            "gltf_external_resources",
            f"the glTF file references {len(external)} external file(s), e.g. {external[0]!r}; "
            "upload a .glb or a .gltf with embedded data: URIs",
            {"uris": external[:20]},
        )
    return SniffResult(
        "gltf", "model/gltf+json", "gltf", {"version": version_str, **_gltf_counts(doc)}
    )


def _json_object(raw: bytes, what: str, *, not_gltf: bool = False) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        if not_gltf:
            raise _unsupported("text that is not valid JSON") from e
        raise SniffError("corrupt_file", f"the {what} is not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise _unsupported("a JSON document that is not glTF")
    return doc


def _asset_version(doc: dict[str, Any], what: str) -> str:
    asset = doc.get("asset")
    version = asset.get("version") if isinstance(asset, dict) else None
    if not isinstance(version, str):
        raise SniffError("corrupt_file", f"the {what} document has no asset.version")
    if not version.startswith("2."):
        raise _unsupported(f"glTF {version}; only glTF 2.x is supported")
    return version


def _gltf_counts(doc: dict[str, Any]) -> dict[str, int]:
    return {
        k: len(doc.get(k) or [])
        for k in ("meshes", "materials", "textures")
        if isinstance(doc.get(k) or [], list)
    }


def _sniff_ply(head: bytes) -> SniffResult:
    end = head.find(b"end_header")
    if end < 0:
        raise SniffError("corrupt_file", "the PLY header has no end_header within 4 KiB")
    lines = head[:end].decode("ascii", "replace").replace("\r", "").split("\n")
    fmt = next(
        (ln.split()[1] for ln in lines if ln.startswith("format ") and len(ln.split()) >= 3), None
    )
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise SniffError("corrupt_file", f"the PLY header has an unknown format {fmt!r}")
    vertices = 0
    props: list[str] = []
    current = None
    for ln in lines:
        parts = ln.split()
        if len(parts) >= 3 and parts[0] == "element":
            current = parts[1]
            if current == "vertex" and parts[2].isdigit():
                vertices = int(parts[2])
        elif len(parts) >= 3 and parts[0] == "property" and current == "vertex":
            props.append(parts[-1])
    splat = {"opacity", "scale_0", "rot_0", "f_dc_0"} <= set(props)
    return SniffResult(
        "ply",
        "application/x-ply",
        "ply",
        {"format": fmt, "vertices": vertices, "gaussian_splat": splat},
    )


# --------------------------------------------------------------------------------------
# claims made by the client (compared with the sniffed kind by the upload route)

_CTYPE_KIND = {
    "application/zip": "images_zip",
    "application/x-zip-compressed": "images_zip",
    "model/gltf-binary": "glb",
    "model/gltf+json": "gltf",
    "model/vnd.usdz+zip": "usdz",
    "model/usd": "usdz",
    "application/x-ply": "ply",
    "model/ply": "ply",
}


def claimed_kinds(filename: str | None, content_type: str | None) -> list[tuple[str, str]]:
    """The kinds a filename extension and a part Content-Type clearly claim, each as
    ``(kind, "extension .mp4" | "Content-Type video/mp4")``; empty when neither claims one
    (no or unknown extension, ``application/octet-stream``, ...)."""
    out: list[tuple[str, str]] = []
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    if "." in base:
        ext = base.rsplit(".", 1)[-1].strip().lower()
        kind = kind_for_extension(ext)
        if kind is not None:
            out.append((kind, f"extension .{ext}"))
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype.startswith("video/"):
        out.append(("video", f"Content-Type {ctype}"))
    elif ctype.startswith("image/"):
        out.append(("image", f"Content-Type {ctype}"))
    elif ctype in _CTYPE_KIND:
        out.append((_CTYPE_KIND[ctype], f"Content-Type {ctype}"))
    return out
