"""Probe and validate ingest inputs (a video, or a set of photos) before heavy work.

:func:`probe_video` opens the container with PyAV (FFmpeg's libavformat), picks the
video stream by type (never by index; cover-art streams are skipped), demuxes every
packet of that stream without decoding (cheap: it gives the exact frame count and
timestamps, so 0/0 or variable frame rates do not matter) and decodes the first frame
to learn the display matrix (rotation) and the colour transfer (HDR). Every bad input
ends in :class:`~arforge.shared.errors.JobFailed` with a machine-readable code:

==========================  =====================================================
``empty_file``              0 bytes
``corrupt_container``       not a readable container, or no packet / frame decodes
                            (e.g. an mp4 cut before its ``moov`` atom)
``no_video_stream``         audio-only or data-only file
``unsupported_codec``       no decoder in this build, or the decoder refuses it
``resolution_too_high``     more pixels than ``max_pixels`` (default 8K UHD)
``video_too_short``         shorter than ``min_duration_s`` or fewer frames than
                            ``min_frames``
``too_few_images``          (photos) fewer readable images than ``min_images``
==========================  =====================================================
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from arforge.shared.errors import JobFailed

from .images import PhotoInfo, read_photo_info
from .orientation import IDENTITY, DisplayTransform, frame_transform

#: 8K UHD (7680 x 4320): the largest frame accepted by default.
MAX_PIXELS_8K = 7680 * 4320
#: FFmpeg ``AVColorTransferCharacteristic`` values for HDR transfers (ITU-R BT.2100).
TRC_PQ = 16  # SMPTE ST 2084
TRC_HLG = 18  # ARIB STD-B67
_HDR_TRANSFERS = {TRC_PQ: "pq", TRC_HLG: "hlg"}


@dataclass(frozen=True)
class VideoProbe:
    """What :func:`probe_video` learned about a video.

    Sizes are pixels; ``width`` x ``height`` are stored, ``display_width`` x
    ``display_height`` after the display matrix. ``rotation`` is FFmpeg's
    counter-clockwise angle in degrees (-90: turn the stored frame clockwise).
    ``duration_s`` spans first to last frame plus one frame duration. ``frame_count``
    counts demuxed packets of the stream (exact for normal files). ``avg_fps`` is
    ``frame_count / duration_s``; ``stream_avg_fps`` / ``stream_real_fps`` are the
    container's own figures (None when 0/0). ``vfr``: frame intervals differ by more
    than 2%. ``hdr``: ``"pq"``, ``"hlg"`` or None. ``truncated``: the sample table
    lists more frames than the file holds (an upload cut short, but readable).
    ``listed_frames``: frames the container's index lists (0 when it has none).
    ``pts`` (sorted, in ``time_base`` units) feeds keyframe windows; not reported.
    """

    path: str
    size_bytes: int
    container: str
    codec: str
    codec_tag: str
    profile: str | None
    pix_fmt: str | None
    width: int
    height: int
    display_width: int
    display_height: int
    rotation: int
    mirrored: bool
    duration_s: float
    frame_count: int
    avg_fps: float
    stream_avg_fps: float | None
    stream_real_fps: float | None
    vfr: bool
    hdr: str | None
    color_transfer: int
    color_primaries: int
    has_audio: bool
    truncated: bool
    time_base: Fraction = field(repr=False)
    pts: tuple[int, ...] = field(repr=False)
    transform: DisplayTransform = field(repr=False, default=IDENTITY)
    listed_frames: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no timestamps list)."""
        d = asdict(self)
        for k in ("pts", "transform", "time_base"):
            d.pop(k)
        return d


@dataclass(frozen=True)
class PhotoProbe:
    """Readable photos (in the given order) and the files rejected with a reason."""

    images: tuple[PhotoInfo, ...]
    rejected: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": [asdict(i) for i in self.images],
            "rejected": [{"name": n, "reason": r} for n, r in self.rejected],
        }


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (ZeroDivisionError, ValueError, TypeError):
        return None
    return f if f > 0 else None


def pick_video_stream(
    container: av.container.InputContainer,
) -> av.video.stream.VideoStream | None:
    """The main video stream: by type, skipping cover art, largest default one first."""
    candidates = []
    for s in container.streams.video:
        disposition = int(getattr(s, "disposition", 0) or 0)
        if disposition & 0x400:  # AV_DISPOSITION_ATTACHED_PIC: cover art, a still
            continue
        is_default = bool(disposition & 0x1)
        w = getattr(s.codec_context, "width", 0) if s.codec_context is not None else 0
        h = getattr(s.codec_context, "height", 0) if s.codec_context is not None else 0
        candidates.append(((is_default, w * h), s))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0], reverse=True)
    return candidates[0][1]


def _corrupt(path: Path, detail: str) -> JobFailed:
    return JobFailed(
        "corrupt_container",
        f"The video file could not be read ({detail}); upload incomplete?",
        {"file": path.name, "detail": detail},
    )


def probe_video(
    path: str | Path,
    *,
    max_pixels: int = MAX_PIXELS_8K,
    min_duration_s: float = 2.0,
    min_frames: int = 8,
) -> VideoProbe:
    """Open ``path``, validate it and describe its main video stream.

    Runs in well under a second for short clips (demux only, one decoded frame).
    Raises ``JobFailed`` with the codes listed in the module docstring; the message is a
    sentence for the user and ``details`` carries the numbers.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise JobFailed("empty_file", "The uploaded file is empty (0 bytes).", {"file": path.name})
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise _corrupt(path, getattr(exc, "strerror", None) or type(exc).__name__) from exc
    with container:
        stream = pick_video_stream(container)
        if stream is None:
            kinds = sorted({s.type for s in container.streams})
            raise JobFailed(
                "no_video_stream",
                "The file has no video stream"
                + (f" (it holds {', '.join(kinds)} only)." if kinds else "."),
                {"file": path.name, "streams": kinds},
            )
        cc = stream.codec_context
        if cc is None:
            raise JobFailed(
                "unsupported_codec",
                "The video codec is not supported (no decoder for it in this build).",
                {"file": path.name, "codec_tag": _codec_tag(stream)},
            )
        codec = cc.name
        width, height = int(cc.width or 0), int(cc.height or 0)
        if width * height > max_pixels:
            raise JobFailed(
                "resolution_too_high",
                f"The video is {width}x{height}; at most {max_pixels / 1e6:.1f} megapixels "
                "per frame are accepted.",
                {"width": width, "height": height, "max_pixels": max_pixels},
            )
        time_base = stream.time_base or Fraction(1, 90000)
        pts, first, truncated = _scan(container, stream, path)
        if not pts:
            raise _corrupt(path, "no video packets")
        if first is None:
            raise JobFailed(
                "unsupported_codec",
                f"No frame of the {codec} video could be decoded.",
                {"file": path.name, "codec": codec},
            )
        transform = frame_transform(first)
        listed = int(stream.frames or 0)
        truncated = truncated or (listed > 0 and len(pts) < listed)
        duration_s, vfr = _timing(pts, time_base, _rate(stream.average_rate))
        trc = int(first.color_trc or cc.color_trc or 2)
        prim = int(first.color_primaries or cc.color_primaries or 2)
        dw, dh = transform.displayed_size(first.width or width, first.height or height)
        probe = VideoProbe(
            path=str(path),
            size_bytes=size,
            container=container.format.name,
            codec=codec,
            codec_tag=_codec_tag(stream),
            profile=getattr(stream, "profile", None),
            pix_fmt=first.format.name,
            width=first.width or width,
            height=first.height or height,
            display_width=dw,
            display_height=dh,
            rotation=transform.rotation,
            mirrored=transform.mirrored,
            duration_s=duration_s,
            frame_count=len(pts),
            avg_fps=len(pts) / duration_s if duration_s > 0 else 0.0,
            stream_avg_fps=_rate(stream.average_rate),
            stream_real_fps=_rate(stream.base_rate),
            vfr=vfr,
            hdr=_HDR_TRANSFERS.get(trc),
            color_transfer=trc,
            color_primaries=prim,
            has_audio=bool(container.streams.audio),
            truncated=truncated,
            time_base=Fraction(time_base),
            pts=tuple(pts),
            transform=transform,
            listed_frames=listed,
        )
    if probe.duration_s < min_duration_s or probe.frame_count < min_frames:
        raise JobFailed(
            "video_too_short",
            f"The video is {probe.duration_s:.2f} s long with {probe.frame_count} frames; "
            f"a walk-around needs at least {min_duration_s:g} s and {min_frames} frames.",
            {
                "duration_s": round(probe.duration_s, 3),
                "frames": probe.frame_count,
                "min_duration_s": min_duration_s,
                "min_frames": min_frames,
            },
        )
    return probe


def _codec_tag(stream: Any) -> str:
    try:
        tag = stream.codec_context.codec_tag if stream.codec_context is not None else ""
    except Exception:
        tag = ""
    return str(tag or "").strip("\x00")


def _scan(container: Any, stream: Any, path: Path) -> tuple[list[int], Any, bool]:
    """Demux every packet of ``stream``; decode until the first frame.

    Returns (sorted unique presentation timestamps, first decoded frame or None,
    whether reading stopped on an error mid-file).
    """
    pts: list[int] = []
    first = None
    truncated = False
    decode_errors = 0
    synthetic = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if getattr(packet, "is_discard", False):
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:  # raw streams without timestamps: number them
                ts = synthetic
            synthetic = ts + max(int(packet.duration or 1), 1)
            pts.append(int(ts))
            if first is None and decode_errors < 64:
                try:
                    frames = stream.decode(packet)
                except av.error.PatchWelcomeError as exc:
                    raise JobFailed(
                        "unsupported_codec",
                        f"This {stream.codec_context.name} video uses a feature the decoder "
                        "does not implement.",
                        {"file": path.name, "codec": stream.codec_context.name},
                    ) from exc
                except av.error.FFmpegError:
                    decode_errors += 1
                    frames = []
                if frames:
                    first = frames[0]
    except av.error.FFmpegError:
        truncated = True
    if first is None and pts:
        try:
            frames = stream.decode(None)
            first = frames[0] if frames else None
        except av.error.FFmpegError:
            first = None
    return sorted(set(pts)), first, truncated


def _timing(pts: list[int], time_base: Fraction, stream_fps: float | None) -> tuple[float, bool]:
    """(duration in seconds, variable frame rate?) from sorted timestamps."""
    tb = float(time_base)
    if len(pts) >= 2:
        steps = [b - a for a, b in itertools.pairwise(pts)]
        median = statistics.median(steps)
        vfr = any(abs(s - median) > max(0.02 * median, 1) for s in steps)
        step: float = steps[-1]  # the last frame lasts like the gap before it
    else:
        step = (1.0 / stream_fps / tb) if stream_fps else 0.0
        vfr = False
    duration = (pts[-1] - pts[0] + step) * tb if pts else 0.0
    return float(duration), vfr


def probe_photos(
    paths: Sequence[str | Path],
    *,
    min_images: int = 3,
    max_pixels: int = 200_000_000,
) -> PhotoProbe:
    """Read the header of each photo (JPEG, PNG, TIFF, WebP, HEIC/HEIF, ...).

    Unreadable files are listed in ``rejected`` with a reason instead of failing the job;
    fewer than ``min_images`` readable photos raises ``JobFailed("too_few_images")``.
    Only headers are read, so this is fast. Zips are expanded by
    :func:`arforge.photogrammetry.images.collect_photos` beforehand.
    """
    images: list[PhotoInfo] = []
    rejected: list[tuple[str, str]] = []
    for p in paths:
        p = Path(p)
        try:
            info = read_photo_info(p, max_pixels=max_pixels)
        except JobFailed:
            raise
        except Exception as exc:
            rejected.append((p.name, f"not a readable image ({type(exc).__name__})"))
            continue
        images.append(info)
    if len(images) < min_images:
        raise JobFailed(
            "too_few_images",
            f"{len(images)} readable photo(s) were given; at least {min_images} are needed "
            "for a reconstruction.",
            {"images": len(images), "rejected": len(rejected), "min_images": min_images},
        )
    return PhotoProbe(images=tuple(images), rejected=tuple(rejected))
