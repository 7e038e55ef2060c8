"""Photo inputs: read headers, expand zips safely, write upright downscaled JPEGs.

Photos carry their orientation as an EXIF tag (TIFF/EXIF 2.3 tag 0x0112, values 1-8);
:func:`PIL.ImageOps.exif_transpose` applies it so every output image is upright, and
the tag is reset so nothing downstream rotates again. HEIC/HEIF (iPhone) is read
through ``pillow-heif``. Camera EXIF (focal length, model) is kept in the output JPEG
so SfM can use it as an intrinsics prior.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from arforge.shared.errors import JobFailed

from .left_out import display_name, dropped_warning

try:  # HEIC / HEIF / AVIF support registers itself with Pillow
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - the dependency is declared
    HEIF_SUPPORTED = False

ProgressFn = Callable[[float, str], None]

#: EXIF orientation values whose display swaps width and height.
_SWAPS_AXES = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_FOCAL_LENGTH = 0x920A
_FOCAL_35MM = 0xA405
_PHOTO_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp",
    ".heic", ".heif", ".hif", ".avif",
}  # fmt: skip


@dataclass(frozen=True)
class PhotoInfo:
    """Header facts of one photo: stored and displayed (upright) size in pixels,
    EXIF orientation (1 = upright), focal length in mm and its 35 mm equivalent."""

    path: str
    format: str
    width: int
    height: int
    display_width: int
    display_height: int
    orientation: int
    focal_length_mm: float | None
    focal_length_35mm: float | None


@dataclass
class PhotoReport:
    """What :func:`prepare_photos` wrote: ``files`` (000001.jpg, ...) in input order,
    ``sources`` the matching original names, ``rejected`` [(name, reason)], the output
    ``sizes`` (width, height), ``rotated`` (how many needed an EXIF rotation) and
    ``source_long_side`` (px, the largest long side among the kept originals).
    ``warnings``: sentences for the job result, one per reason photos were left out."""

    inputs: int
    kept: int
    rotated: int
    max_image_size: int
    elapsed_s: float
    source_long_side: int = 0
    files: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _as_float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f > 0 else None


def read_photo_info(path: str | Path, *, max_pixels: int = 200_000_000) -> PhotoInfo:
    """Header-only read of one photo. Raises ``JobFailed("resolution_too_high")`` over
    ``max_pixels``; other unreadable files raise Pillow's errors (OSError, ...)."""
    path = Path(path)
    with Image.open(path) as im:
        w, h = im.size
        if w * h > max_pixels:
            raise JobFailed(
                "resolution_too_high",
                f"Photo {path.name} is {w}x{h}; at most {max_pixels / 1e6:.0f} megapixels "
                "are accepted.",
                {"file": path.name, "width": w, "height": h, "max_pixels": max_pixels},
            )
        exif = im.getexif()
        orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
        if orientation not in range(1, 9):
            orientation = 1
        sub = exif.get_ifd(_EXIF_IFD)
        fmt = im.format or path.suffix.lstrip(".").upper()
    dw, dh = (h, w) if orientation in _SWAPS_AXES else (w, h)
    return PhotoInfo(
        path=str(path),
        format=fmt,
        width=w,
        height=h,
        display_width=dw,
        display_height=dh,
        orientation=orientation,
        focal_length_mm=_as_float(sub.get(_FOCAL_LENGTH)),
        focal_length_35mm=_as_float(sub.get(_FOCAL_35MM)),
    )


def collect_photos(
    inputs: Sequence[str | Path] | str | Path,
    work_dir: str | Path,
    *,
    max_files: int = 2000,
    max_total_bytes: int = 8 << 30,
) -> list[Path]:
    """Expand ``inputs`` (photo files, folders, ``.zip`` archives) into a list of files.

    Zip members are extracted under ``work_dir/unzipped`` with generated names (never
    the archive's paths: no ``../`` escapes), skipping folders, hidden files, macOS
    ``__MACOSX`` resource forks and anything that is not a photo suffix. The order is
    natural (``img2`` before ``img10``) per input. Raises ``JobFailed("corrupt_archive")``
    for a broken zip and ``JobFailed("archive_too_large")`` past the limits.
    """
    labelled = collect_labelled(
        inputs, work_dir, max_files=max_files, max_total_bytes=max_total_bytes
    )
    return [p for p, _ in labelled]


def collect_labelled(
    inputs: Sequence[str | Path] | str | Path,
    work_dir: str | Path,
    *,
    names: Sequence[str | None] | None = None,
    max_files: int = 2000,
    max_total_bytes: int = 8 << 30,
) -> list[tuple[Path, str]]:
    """:func:`collect_photos`, each file paired with the name a warning gives it.

    ``names``: the original upload file name of each input (None where unknown), e.g.
    when the inputs are stored under generated names; without it an input goes by its
    file name. A plain input is its name (or "input <n>", 1-based, where ``names`` has
    None); a folder's file its path in the folder; a zip member "<path in the archive>
    in <archive name>". Same errors as :func:`collect_photos`.
    """
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    if names is not None and len(names) != len(inputs):
        raise ValueError(f"{len(names)} names given for {len(inputs)} inputs")
    out: list[tuple[Path, str]] = []
    unzip_dir = Path(work_dir) / "unzipped"
    total = 0
    for index, item in enumerate(inputs):
        p = Path(item)
        label = display_name(names[index], index) if names is not None else p.name
        if p.is_dir():
            files = [f for f in p.rglob("*") if f.is_file() and not _hidden(f.relative_to(p))]
            files = [f for f in files if f.suffix.lower() in _PHOTO_SUFFIXES]
            files.sort(key=lambda f: _natural_key(str(f.relative_to(p))))
            out.extend((f, _printable(str(f.relative_to(p)))) for f in files)
        elif zipfile.is_zipfile(p):
            try:
                with zipfile.ZipFile(p) as zf:
                    members = [
                        m
                        for m in zf.infolist()
                        if not m.is_dir()
                        and not _hidden(Path(m.filename))
                        and Path(m.filename).suffix.lower() in _PHOTO_SUFFIXES
                    ]
                    members.sort(key=lambda m: _natural_key(m.filename))
                    unzip_dir.mkdir(parents=True, exist_ok=True)
                    for m in members:
                        total += m.file_size
                        if len(out) >= max_files or total > max_total_bytes:
                            raise JobFailed(
                                "archive_too_large",
                                f"The archive holds more than {max_files} photos or "
                                f"{max_total_bytes >> 30} GiB.",
                                {"max_files": max_files, "max_total_bytes": max_total_bytes},
                            )
                        dest = unzip_dir / f"{len(out):06d}{Path(m.filename).suffix.lower()}"
                        with zf.open(m) as src, dest.open("wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
                        out.append((dest, f"{_printable(m.filename)} in {label}"))
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                raise JobFailed(
                    "corrupt_archive",
                    f"The zip archive {label} could not be read ({exc}); upload incomplete?",
                    {"file": p.name},
                ) from exc
        elif _looks_like_zip(p):  # local header but no central directory: cut short
            raise JobFailed(
                "corrupt_archive",
                f"The zip archive {label} has no central directory; upload incomplete?",
                {"file": p.name},
            )
        else:
            out.append((p, label))
    return out


def _printable(name: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in name)


def _looks_like_zip(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _hidden(rel: Path) -> bool:
    """Hidden files and macOS resource forks (``..`` is not hidden: names are generated)."""
    return any(
        (part.startswith(".") and part not in (".", "..")) or part == "__MACOSX"
        for part in rel.parts
    )


def load_upright(path: str | Path) -> Image.Image:
    """Open a photo as an upright 8-bit RGB image (EXIF orientation applied)."""
    with Image.open(path) as im:
        im.load()
        upright = ImageOps.exif_transpose(im)
    if upright.mode not in ("RGB", "L"):
        if upright.mode in ("I;16", "I;16B", "I;16L", "I"):
            upright = upright.point(lambda v: v / 256).convert("L")
        elif "A" in upright.mode or upright.mode == "P":
            rgba = upright.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.getchannel("A"))
            upright = bg
        else:
            upright = upright.convert("RGB")
    return upright.convert("RGB")


#: Why a photo was left out -> (singular, plural) verb phrase for its warning.
_REASONS = {
    "damaged": (
        "could not be decoded (truncated or damaged)",
        "could not be decoded (truncated or damaged)",
    ),
    "unrecognised": (
        "is not in an image format that can be read",
        "are not in an image format that can be read",
    ),
    "empty": ("is empty (0 bytes)", "are empty (0 bytes)"),
}
_NOUNS = {"damaged": "photo", "unrecognised": "file", "empty": "file"}


def prepare_photos(
    inputs: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    names: Sequence[str | None] | None = None,
    max_image_size: int = 1200,
    min_images: int = 3,
    jpeg_quality: int = 95,
    on_progress: ProgressFn | None = None,
) -> PhotoReport:
    """Write each photo upright, downscaled to ``max_image_size`` on the long side (never
    upscaled), as ``out_dir/000001.jpg``, ``000002.jpg``, ... in natural name order.

    ``inputs``: photo files, folders or zip archives. ``names``: the original upload
    file name of each input (None where unknown; see :func:`collect_labelled`), used in
    ``sources`` and warnings. Camera EXIF is kept, orientation reset to 1. Unreadable
    files are skipped, listed in ``rejected`` and named in ``warnings`` (one sentence per
    reason: damaged data, unknown format, empty file); fewer than ``min_images`` usable
    photos raise ``JobFailed("too_few_images")``, whose message names the files left out.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".photos-") as work:
        labelled = collect_labelled(inputs, work, names=names)
        report = _write_photos(labelled, out_dir, max_image_size, jpeg_quality, on_progress)
    if report.kept < min_images:
        for name in report.files:
            (out_dir / name).unlink(missing_ok=True)
        left_out = "".join(f" {w[0].upper()}{w[1:]}." for w in report.warnings)
        raise JobFailed(
            "too_few_images",
            f"{report.kept} usable photo(s) were given; at least {min_images} are needed "
            f"for a reconstruction.{left_out}",
            {"images": report.kept, "rejected": len(report.rejected), "min_images": min_images},
        )
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    return report


def _write_photos(
    labelled: list[tuple[Path, str]],
    out_dir: Path,
    max_image_size: int,
    jpeg_quality: int,
    on_progress: ProgressFn | None,
) -> PhotoReport:
    report = PhotoReport(
        inputs=len(labelled), kept=0, rotated=0, max_image_size=max_image_size, elapsed_s=0.0
    )
    dropped: dict[str, list[str]] = {}
    for i, (p, label) in enumerate(labelled):
        try:
            info = read_photo_info(p)
            img = load_upright(p)
            exif = _clean_exif(p)
        except JobFailed:
            raise
        except Exception as exc:
            reason = _reason(p, exc)
            report.rejected.append((label, _REASONS[reason][0]))
            dropped.setdefault(reason, []).append(label)
            continue
        report.source_long_side = max(report.source_long_side, *img.size)
        scale = min(1.0, max_image_size / max(img.size))
        if scale < 1.0:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        name = f"{report.kept + 1:06d}.jpg"
        img.save(out_dir / name, "JPEG", quality=jpeg_quality, exif=exif)
        report.kept += 1
        report.rotated += info.orientation != 1
        report.files.append(name)
        report.sources.append(label)
        report.sizes.append(img.size)
        if on_progress is not None:
            on_progress((i + 1) / len(labelled), "photos")
    report.warnings = [
        dropped_warning(_NOUNS[reason], dropped[reason], *_REASONS[reason])
        for reason in _REASONS
        if reason in dropped
    ]
    return report


def _reason(path: Path, exc: Exception) -> str:
    """Key of :data:`_REASONS` for a photo that could not be read."""
    if path.stat().st_size == 0:
        return "empty"
    return "unrecognised" if isinstance(exc, UnidentifiedImageError) else "damaged"


def _clean_exif(path: Path) -> bytes:
    """The photo's EXIF with orientation reset to 1 (empty bytes when it has none)."""
    with Image.open(path) as im:
        exif = im.getexif()
        if not exif:
            return b""
        exif.get_ifd(_EXIF_IFD)  # load the camera sub-IFD so it is written back
        exif[_EXIF_ORIENTATION] = 1
        try:
            return exif.tobytes()
        except Exception:
            return b""
