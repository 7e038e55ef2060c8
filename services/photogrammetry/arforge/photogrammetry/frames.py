"""Keyframe extraction: a walk-around video -> upright, sharp, downscaled JPEGs for SfM.

One streaming pass over the video with PyAV (frame-threaded decoding):

* **Timestamp windows.** The clip's span (first to last presentation timestamp plus one
  frame) is cut into ``max_frames`` equal time windows; each decoded frame falls in
  exactly one window by its own timestamp, so variable frame rates are safe and no frame
  is ever emitted twice (unlike resampling to a constant rate, which duplicates frames
  in sparse stretches). When the clip has ``<= max_frames`` frames every frame is its
  own window: low-rate captures (one photo per frame) keep every view.
* **Sharpest per window.** Variance of the Laplacian on the downscaled luma plane
  (:mod:`.sharpness`; Pech-Pacheco et al. 2000), the usual frame-selection criterion
  of video photogrammetry pipelines (e.g. nerfstudio, Meshroom's KeyframeSelection).
* **Blur rejection relative to the clip.** A window's pick is dropped when its
  contrast-normalised sharpness is below ``blur_ratio`` times the clip's 90th percentile,
  so a clip's own sharp frames set the bar (normalising by contrast keeps dark or flat
  views of a sharp clip, e.g. the skull capture, above it). If even the clip's 90th
  percentile of raw Laplacian variance is under ``min_sharpness`` (Laplacian standard
  deviation under about 2.5 grey levels at 640 px: no fine detail anywhere, so no
  features either), the whole input is blurry (``blurry_input``).
* **Upright, like the ffmpeg CLI.** The display matrix is applied (:mod:`.orientation`);
  HDR (PQ/HLG) is tone-mapped to sRGB (:mod:`.tonemap`) or refused (``hdr_unsupported``).
* **Cheap.** Only a window's winning frame is converted to RGB, at its output size
  (swscale area filter), and written as JPEG; other frames cost a decode and a 640 px
  grey Laplacian.
* **Damage is reported, never silent.** Packets the decoder rejects and frames it
  outputs with concealed errors (skipped) are counted; the report says where decoding
  failed (:mod:`.decode_damage`) and carries ``warnings`` for the job result. A damaged
  or cut-short file left with fewer than ``min_frames`` frames fails
  ``corrupt_container``.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
import av.error
import numpy as np
from PIL import Image

from arforge.shared.errors import JobFailed

from .decode_damage import DecodeDamage, assess, too_few_frames, warnings_for
from .images import PhotoReport, prepare_photos
from .orientation import DisplayTransform
from .probe import VideoProbe, pick_video_stream, probe_video
from .sharpness import analysis_image, luma, measure
from .tonemap import tonemap_to_sdr

__all__ = ["FrameReport", "PhotoReport", "extract_keyframes", "prepare_photos"]

ProgressFn = Callable[[float, str], None]

#: Mean absolute grey difference (0..255, on the 640 px analysis image) under which a
#: frame repeats its predecessor (a duplicated frame, e.g. from constant-rate padding).
DUPLICATE_MAD = 0.25
_BT2020_PRIMARIES = 9


@dataclass
class FrameReport:
    """Outcome of :func:`extract_keyframes`.

    Counts: ``decoded`` frames, ``duplicates`` skipped (repeated timestamp or content),
    ``windows`` (time windows), ``candidates`` (windows that held a frame), ``kept``,
    ``rejected_blurry``. Per kept frame, in file order: ``files`` (000001.jpg, ...),
    ``timestamps_s`` (presentation time from the first frame), ``frame_indices`` (decode
    order among non-duplicate frames) and ``sharpness`` (variance of the Laplacian).
    ``width`` x ``height``: upright source size; ``output_width`` x ``output_height``:
    written size. ``mode``: ``"every_frame"`` or ``"windows"``.

    Damage (see :class:`.decode_damage.DecodeDamage`): ``truncated`` (the file ends
    before the frames it lists), ``damaged`` (the decoder rejected data:
    ``decode_errors`` packets, ``corrupt_frames`` concealed frames skipped),
    ``expected_frames`` (listed by the container), ``missing_frames`` (listed, never
    decoded), ``damaged_at_frame`` (1-based) and ``damaged_at_s`` (seconds from the first
    frame; of ``duration_s``): the first frame lost. ``decoded`` counts intact frames
    only. ``warnings``: sentences for the job result (empty for an intact file).
    """

    source: str
    mode: str
    decoded: int
    duplicates: int
    windows: int
    candidates: int
    kept: int
    rejected_blurry: int
    width: int
    height: int
    output_width: int
    output_height: int
    rotation: int
    hdr: str | None
    truncated: bool
    damaged: bool
    decode_errors: int
    corrupt_frames: int
    expected_frames: int
    missing_frames: int
    damaged_at_frame: int | None
    damaged_at_s: float | None
    duration_s: float
    sharpness_reference: float
    blur_threshold: float
    elapsed_s: float
    files: list[str] = field(default_factory=list)
    timestamps_s: list[float] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Candidate:
    window: int
    index: int
    pts: int
    laplacian_var: float
    normalized: float
    tmp: Path | None = None


@dataclass
class _Tally:
    """Counts of one decoding pass: intact frames (``decoded``, their timestamps in
    ``seen_pts``), repeats skipped, rejected packets, concealed frames' timestamps."""

    decoded: int = 0
    duplicates: int = 0
    decode_errors: int = 0
    seen_pts: set[int] = field(default_factory=set)
    corrupt_pts: list[int] = field(default_factory=list)


@dataclass
class _Read:
    """How reading went: ``truncated`` once a demux error stopped it, ``decode_errors``
    packets rejected by the decoder on the way."""

    truncated: bool = False
    decode_errors: int = 0


class _Windows:
    """Maps a presentation timestamp to its window index (see module docstring)."""

    def __init__(self, pts: Sequence[int], max_frames: int) -> None:
        self.pts = list(pts)
        self.every_frame = len(self.pts) <= max_frames
        self.count = len(self.pts) if self.every_frame else max_frames
        self.pts0 = self.pts[0]
        # the last frame lasts as long as the gap before it (VFR: its local rate)
        step = max(self.pts[-1] - self.pts[-2], 1) if len(self.pts) > 1 else 1
        self.span = max(self.pts[-1] - self.pts0 + step, 1)

    def __call__(self, pts: int) -> int:
        if self.every_frame:
            return max(bisect.bisect_right(self.pts, pts) - 1, 0)
        w = (pts - self.pts0) * self.count // self.span
        return min(max(int(w), 0), self.count - 1)


def extract_keyframes(
    video: str | Path,
    out_dir: str | Path,
    *,
    max_frames: int = 150,
    max_image_size: int = 1200,
    on_progress: ProgressFn | None = None,
    probe: VideoProbe | None = None,
    hdr: Literal["tonemap", "reject"] = "tonemap",
    blur_ratio: float = 0.25,
    min_sharpness: float = 6.0,
    min_keyframes: int = 3,
    min_frames: int = 8,
    jpeg_quality: int = 95,
) -> FrameReport:
    """Pick up to ``max_frames`` sharp, upright keyframes from ``video`` into ``out_dir``.

    Writes ``000001.jpg``, ``000002.jpg``, ... (JPEG quality ``jpeg_quality``) in time
    order, downscaled so the long side is at most ``max_image_size`` px (never
    upscaled). ``on_progress(fraction, "keyframes")`` is called as decoding advances.
    ``probe``: a :func:`~.probe.probe_video` result to reuse (probed here otherwise, so
    every probe failure code applies). ``blur_ratio`` / ``min_sharpness``: see the module
    docstring (``min_sharpness`` is a raw Laplacian variance, 8-bit grey, 640 px).
    ``min_frames``: a damaged or truncated video must still give this many distinct
    intact frames (the probe's floor for a whole video).

    Raises ``JobFailed``: the probe codes, ``hdr_unsupported`` (HDR with
    ``hdr="reject"``), ``blurry_input`` (fewer than ``min_keyframes`` frames pass the
    blur test), ``corrupt_container`` (nothing decodes, or damage / a cut left fewer than
    ``min_frames`` frames; details say where decoding failed).
    """
    t0 = time.perf_counter()
    video = Path(video)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    probe = probe or probe_video(video)
    if probe.hdr and hdr == "reject":
        raise JobFailed(
            "hdr_unsupported",
            f"The video is HDR ({probe.hdr.upper()}); record in SDR or enable tone mapping.",
            {"transfer": probe.hdr},
        )
    windows = _Windows(probe.pts, max_frames)
    candidates: list[_Candidate] = []
    norms: list[float] = []
    raws: list[float] = []
    stats = _Tally()
    truncated = probe.truncated
    out_size: tuple[int, int] = (0, 0)
    try:
        truncated, out_size = _decode_and_pick(
            probe, windows, out_dir, max_image_size, jpeg_quality, candidates, norms, raws, stats,
            on_progress,
        )  # fmt: skip
        truncated = truncated or probe.truncated
        damage = _assess(probe, stats)
        usable = stats.decoded - stats.duplicates
        if (damage.damaged or truncated) and usable < min_frames:
            raise too_few_frames(damage, usable, min_frames, truncated, video.name)
        reference = float(np.percentile(norms, 90)) if norms else 0.0
        threshold = blur_ratio * reference
        raw_reference = float(np.percentile(raws, 90)) if raws else 0.0
        if raw_reference < min_sharpness:
            raise JobFailed(
                "blurry_input",
                f"All {stats.decoded} frames are blurred (sharpness {raw_reference:.1f}, "
                f"needs {min_sharpness:.1f}); film slower, in more light, and hold focus.",
                {"decoded": stats.decoded, "sharpness": raw_reference, "floor": min_sharpness},
            )
        kept = [c for c in candidates if c.normalized >= threshold]
        if len(kept) < min(min_keyframes, len(candidates)) or not kept:
            raise JobFailed(
                "blurry_input",
                f"Only {len(kept)} of {len(candidates)} candidate frames are sharp enough; "
                "film slower, in more light, and hold focus.",
                {"candidates": len(candidates), "kept": len(kept), "threshold": threshold},
            )
        report = FrameReport(
            source=video.name,
            mode="every_frame" if windows.every_frame else "windows",
            decoded=stats.decoded,
            duplicates=stats.duplicates,
            windows=windows.count,
            candidates=len(candidates),
            kept=len(kept),
            rejected_blurry=len(candidates) - len(kept),
            width=probe.display_width,
            height=probe.display_height,
            output_width=out_size[0],
            output_height=out_size[1],
            rotation=probe.rotation,
            hdr=probe.hdr,
            truncated=truncated,
            damaged=damage.damaged,
            decode_errors=damage.decode_errors,
            corrupt_frames=damage.corrupt_frames,
            expected_frames=damage.expected_frames,
            missing_frames=damage.missing_frames,
            damaged_at_frame=damage.first_frame,
            damaged_at_s=damage.first_s,
            duration_s=round(probe.duration_s, 6),
            sharpness_reference=round(reference, 6),
            blur_threshold=round(threshold, 6),
            elapsed_s=0.0,
            warnings=warnings_for(damage, stats.decoded, truncated),
        )
        tb = float(probe.time_base)
        for n, c in enumerate(kept, start=1):
            name = f"{n:06d}.jpg"
            assert c.tmp is not None
            c.tmp.replace(out_dir / name)
            c.tmp = None
            report.files.append(name)
            report.timestamps_s.append(round((c.pts - windows.pts0) * tb, 6))
            report.frame_indices.append(c.index)
            report.sharpness.append(round(c.laplacian_var, 3))
    finally:
        for c in candidates:
            if c.tmp is not None:
                c.tmp.unlink(missing_ok=True)
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    if on_progress is not None:
        on_progress(1.0, "keyframes")
    return report


def _assess(probe: VideoProbe, stats: _Tally) -> DecodeDamage:
    return assess(
        probe.pts,
        probe.time_base,
        probe.duration_s,
        max(probe.frame_count, probe.listed_frames),
        stats.seen_pts,
        stats.corrupt_pts,
        stats.decode_errors,
    )


def _decode_and_pick(
    probe: VideoProbe,
    windows: _Windows,
    out_dir: Path,
    max_image_size: int,
    jpeg_quality: int,
    candidates: list[_Candidate],
    norms: list[float],
    raws: list[float],
    stats: _Tally,
    on_progress: ProgressFn | None,
) -> tuple[bool, tuple[int, int]]:
    """Decode every frame once; keep the sharpest per window, written to a temp JPEG.

    Appends to ``candidates`` / ``norms`` / ``raws`` and counts in ``stats`` (frames the
    decoder flags as corrupt are counted there and skipped); returns (stopped early on a
    read error, output size).
    """
    transform = probe.transform
    total = max(probe.frame_count, 1)
    step_report = max(total // 50, 1)
    best: tuple[Any, _Candidate] | None = None
    prev_small: np.ndarray | None = None
    last_pts: int | None = None
    index = 0
    out_size = (0, 0)
    read = _Read()

    def finalize() -> None:
        nonlocal best, out_size
        if best is None:
            return
        frame, cand = best
        rgb = _render(frame, transform, max_image_size, probe)
        out_size = (rgb.shape[1], rgb.shape[0])
        cand.tmp = out_dir / f".keyframe-{cand.window:06d}.jpg"
        Image.fromarray(rgb).save(cand.tmp, "JPEG", quality=jpeg_quality)
        candidates.append(cand)
        best = None

    with av.open(str(probe.path)) as container:
        stream = pick_video_stream(container)
        if stream is None or stream.codec_context is None:  # probe said otherwise: file changed
            raise JobFailed("no_video_stream", "The file has no decodable video stream.", {})
        stream.codec_context.thread_type = "AUTO"
        for frame in _frames(container, stream, read):
            pts = frame.pts
            if pts is None:  # raw streams (.h264): count on, as the probe did
                step = max(int(frame.duration or 0), 1)
                pts = (last_pts + step) if last_pts is not None else windows.pts0
            if getattr(frame, "is_corrupt", False):  # concealed errors: garbage patches
                stats.corrupt_pts.append(pts)
                last_pts = pts if last_pts is None else max(last_pts, pts)
                continue
            stats.decoded += 1
            stats.seen_pts.add(pts)
            if last_pts is not None and pts <= last_pts:
                stats.duplicates += 1
                continue
            last_pts = pts
            small = analysis_image(luma(frame))
            if (
                prev_small is not None
                and prev_small.shape == small.shape
                and float(np.abs(prev_small - small).mean()) < DUPLICATE_MAD
            ):
                stats.duplicates += 1
                continue
            prev_small = small
            sharp = measure(small)
            norms.append(sharp.normalized)
            raws.append(sharp.laplacian_var)
            w = windows(pts)
            if best is not None and best[1].window != w:
                finalize()
            if best is None or sharp.laplacian_var > best[1].laplacian_var:
                best = (frame, _Candidate(w, index, pts, sharp.laplacian_var, sharp.normalized))
            index += 1
            if on_progress is not None and stats.decoded % step_report == 0:
                on_progress(min(stats.decoded / total, 0.99), "keyframes")
        finalize()
    stats.decode_errors = read.decode_errors
    if stats.decoded == 0:
        raise JobFailed(
            "corrupt_container",
            "No video frame could be decoded; upload incomplete?",
            {"file": Path(probe.path).name},
        )
    return read.truncated, out_size


def _frames(container: Any, stream: Any, read: _Read) -> Any:
    """Decoded frames of ``stream``. A packet the decoder rejects (invalid data) is
    counted in ``read.decode_errors`` and skipped; if reading stops on an error (a file
    cut short) the frames still buffered are flushed and ``read.truncated`` is set."""
    try:
        for packet in container.demux(stream):
            try:
                yield from stream.decode(packet)
            except av.error.InvalidDataError:
                read.decode_errors += 1
    except av.error.FFmpegError:
        read.truncated = True
        with contextlib.suppress(av.error.FFmpegError):
            yield from stream.decode(None)


def _render(
    frame: Any, transform: DisplayTransform, max_image_size: int, probe: VideoProbe
) -> np.ndarray:
    """Upright RGB (H x W x 3 uint8) of ``frame``, long side <= ``max_image_size``."""
    dw, dh = transform.displayed_size(frame.width, frame.height)
    scale = min(1.0, max_image_size / max(dw, dh))
    ow, oh = max(1, round(dw * scale)), max(1, round(dh * scale))
    sw, sh = transform.stored_size(ow, oh)
    if probe.hdr:
        rgb16 = frame.reformat(sw, sh, "rgb48le", interpolation="AREA").to_ndarray()
        rgb = tonemap_to_sdr(rgb16, probe.hdr, bt2020=probe.color_primaries == _BT2020_PRIMARIES)
    else:
        rgb = frame.reformat(sw, sh, "rgb24", interpolation="AREA").to_ndarray()
    return transform.apply(rgb)
