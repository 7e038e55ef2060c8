"""Structure from motion with pycolmap: images -> camera poses and a sparse point cloud.

Pure compute over local paths (no asyncio, NATS or storage); the worker runs it in a
child process (``ctx.run_isolated``) because COLMAP aborts the whole process on some
inputs (glog ``Check failed``, case S-01).

Pipeline (COLMAP, Schönberger & Frahm, "Structure-from-Motion Revisited", CVPR 2016):
SIFT features (Lowe, IJCV 2004) -> pair selection (sequential window with loop closure for
ordered captures, all pairs for small photo sets) -> matching with geometric verification
-> match-graph checks (duplicates, overlap, parallax; ``sfm_checks``) -> incremental
mapping -> optionally a second, relaxed registration pass seeded with the largest model
when the reconstruction split -> the largest model written to ``work_dir/sparse`` and a
JSON report to ``work_dir/sfm_report.json``.
"""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pycolmap
from PIL import Image

from arforge.photogrammetry import capabilities
from arforge.photogrammetry.left_out import dropped_warning, placement_warning
from arforge.photogrammetry.sfm_checks import MatchGraphStats, analyse_match_graph
from arforge.photogrammetry.sfm_pairs import (
    chunked,
    exhaustive_pairs,
    sequential_pairs,
    write_pairs_file,
)
from arforge.photogrammetry.sfm_report import SfMResult, summarize, write_report
from arforge.photogrammetry.sfm_size import FeatureScale, feature_scale, size_advice
from arforge.shared.errors import JobFailed

Progress = Callable[[float, str], None]
StageProgress = Callable[[float], None]
Matcher = Literal["auto", "sequential", "exhaustive"]
CameraModeName = Literal["auto", "single", "per_image"]
MapperName = Literal["incremental", "global"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
EXHAUSTIVE_MAX_IMAGES = 100
"""``matcher="auto"`` matches all pairs of an unordered set up to this many images."""

# Share of the progress bar per stage (roughly their share of the time on a CPU).
_STAGES = (("features", 0.0, 0.35), ("matching", 0.35, 0.65), ("mapping", 0.65, 0.97))

_EXIF_MAKE, _EXIF_MODEL, _EXIF_IFD, _EXIF_FOCAL = 271, 272, 0x8769, 37386


def list_images(image_dir: Path) -> list[str]:
    """Image file names in ``image_dir`` (not recursive), in natural order (frame_2 < frame_10)."""
    names = [
        p.name for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(
        names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]
    )


def camera_groups(image_dir: Path, names: Sequence[str]) -> list[list[str]]:
    """Group images that share intrinsics: same pixel size and EXIF make, model and focal.

    Video frames (same size, no EXIF) form one group; photos from two phones, or one
    zoom lens at two focal lengths, form several. Unreadable headers form their own group
    (COLMAP then skips or reports the file).
    """
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name in names:
        try:
            with Image.open(image_dir / name) as im:
                exif = im.getexif()
                focal = exif.get_ifd(_EXIF_IFD).get(_EXIF_FOCAL)
                key: tuple[Any, ...] = (
                    im.size,
                    exif.get(_EXIF_MAKE),
                    exif.get(_EXIF_MODEL),
                    None if focal is None else round(float(focal), 2),
                )
        except Exception:
            key = ("unreadable", name)
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def run_sfm(
    image_dir: Path | str,
    work_dir: Path | str,
    *,
    matcher: Matcher = "auto",
    ordered: bool | None = None,
    max_image_size: int = 1200,
    source_long_side: int | None = None,
    max_num_features: int = 8192,
    camera_mode: CameraModeName = "auto",
    camera_model: str = "SIMPLE_RADIAL",
    sequential_overlap: int = 6,
    loop_closure: bool = True,
    max_num_matches: int = 32768,
    guided_matching: bool = False,
    mapper: MapperName = "incremental",
    refine_below_ratio: float = 1.0,
    min_registered_images: int = 3,
    min_registered_ratio: float = 0.5,
    split_warning_ratio: float = 0.9,
    degenerate_max_general_ratio: float = 0.1,
    device: capabilities.DeviceRequest = "auto",
    num_threads: int = -1,
    seed: int | None = 0,
    verbose: bool = False,
    labels: Mapping[str, str] | None = None,
    on_progress: Progress | None = None,
) -> SfMResult:
    """Recover camera poses and a sparse 3D point cloud from the images in ``image_dir``.

    Inputs: ``image_dir`` holds upright images (EXIF orientation already applied) named
    without whitespace (``ValueError`` otherwise), as the ingest writes them;
    ``work_dir`` receives ``database.db``, ``pairs/``, ``models/<i>`` (every model found),
    ``sparse/`` (the largest model, COLMAP binary) and ``sfm_report.json``.

    Matching: ``sequential`` matches each image with its ``sequential_overlap`` successors
    (plus 2^k jumps, plus a wrap-around window when ``loop_closure``) and suits video
    frames; ``exhaustive`` matches all pairs (small photo sets); ``auto`` takes sequential
    when ``ordered`` (video frames) or when there are more than ``EXHAUSTIVE_MAX_IMAGES``
    images, else exhaustive. ``max_image_size`` (px, long side) and ``max_num_features``
    bound SIFT extraction; keypoints stay in original-image pixels.
    ``source_long_side``: the capture's long side (px) before the ingest downscaled the
    images, if it did; when registration fails or splits on images downscaled below
    ``sfm_size.SMALL_IMAGE_PX``, the message names ``max_image_size`` first.

    Cameras: ``camera_mode="auto"`` shares one camera (``camera_model``, e.g.
    ``SIMPLE_RADIAL`` or ``OPENCV``) per group of images with the same size and EXIF
    camera (one for a video), ``single`` forces one, ``per_image`` one per image.

    Mapping: ``incremental`` (COLMAP's incremental pipeline) or ``global`` (GLOMAP's global
    pipeline in pycolmap). When the largest model holds fewer than ``refine_below_ratio``
    of the images (default: whenever an image is left out), a second incremental pass
    continues from it with relaxed absolute-pose thresholds to register the rest (on
    ``skull/all66`` it adds one photo, 64 -> 65 of 66, in about 2 s).

    Errors (``arforge.shared.errors.JobFailed``): ``too_few_images`` (fewer than
    ``min_registered_images`` readable images), ``sfm_insufficient_registration``
    (largest model under ``min_registered_images`` or ``min_registered_ratio``; details
    carry the counts and ``image_size``), ``degenerate_motion`` (the verified pairs show
    no parallax: the camera rotated or panned in place), ``gpu_unavailable``
    (``device="cuda"`` without CUDA). ``on_progress(fraction in [0, 1], stage)`` is
    called between steps.

    Warnings (``SfMResult.warnings``, sentences for the job result; :mod:`.left_out`):
    images with no features to match, and, when the kept model holds fewer than
    ``split_warning_ratio`` of the images, the images left out (in other models or in
    none). ``labels`` maps image file names to the names these warnings use after the
    noun ("image", or "frame" when ``ordered``), e.g. the original upload names of
    photos or "at 1.50 s" for a video's keyframes; unmapped images go by file name.
    """
    t_start = time.perf_counter()
    image_dir = Path(image_dir).resolve()
    work_dir = Path(work_dir).resolve()
    progress = on_progress or (lambda _f, _s: None)
    dev = capabilities.choose_device(device, capabilities.detect())

    def label(name: str) -> str:
        return (labels or {}).get(name, name)

    noun = "frame" if ordered else "image"

    if not verbose:
        pycolmap.logging.minloglevel = 1  # warnings and errors only
    if seed is not None:
        pycolmap.set_random_seed(seed)
    names = list_images(image_dir) if image_dir.is_dir() else []
    if not names:
        raise JobFailed(
            "too_few_images",
            f"Structure from motion needs at least {min_registered_images} images; "
            "the input has none.",
            {"total_images": 0, "required": min_registered_images},
        )
    spaced = [n for n in names if any(c.isspace() for c in n)]
    if spaced:  # COLMAP's match list is space-separated; the ingest writes 000001.jpg, ...
        raise ValueError(f"image names must not contain whitespace: {spaced[:3]}")
    _reset_work_dir(work_dir)
    scale = feature_scale(image_dir, names, max_image_size, source_long_side)
    database = work_dir / "database.db"
    timings: dict[str, float] = {}
    warnings: list[str] = []
    report_path = work_dir / "sfm_report.json"

    def timed(stage: str, t0: float) -> None:
        timings[stage] = round(time.perf_counter() - t0, 3)

    try:
        # --- features --------------------------------------------------------------
        t0 = time.perf_counter()
        if camera_mode == "single":
            groups = [list(names)]
        elif camera_mode == "per_image":
            groups = [[n] for n in names]
        else:
            groups = camera_groups(image_dir, names)
        _extract(
            database,
            image_dir,
            groups,
            camera_model=camera_model,
            max_image_size=max_image_size,
            max_num_features=max_num_features,
            num_threads=num_threads,
            device=dev,
            progress=_scaled(progress, "features"),
        )
        usable = _images_with_features(database, names)
        featureless = [n for n in names if n not in set(usable)]
        if featureless:
            warnings.append(
                dropped_warning(
                    noun,
                    [label(n) for n in featureless],
                    "could not be read or shows no detail to match (blank, blurred or dark)",
                    "could not be read or show no detail to match (blank, blurred or dark)",
                )
            )
        timed("features", t0)

        # --- matching --------------------------------------------------------------
        t0 = time.perf_counter()
        if matcher == "auto":
            many = len(usable) > EXHAUSTIVE_MAX_IMAGES
            matcher = "sequential" if ordered or many else "exhaustive"
        if matcher == "sequential":
            pairs = sequential_pairs(
                len(usable), overlap=sequential_overlap, loop_closure=loop_closure
            )
        elif matcher == "exhaustive":
            pairs = exhaustive_pairs(len(usable))
        else:
            raise ValueError(
                f"unknown matcher {matcher!r}; expected auto, sequential or exhaustive"
            )
        _match(
            database,
            work_dir / "pairs",
            usable,
            pairs,
            max_num_matches=max_num_matches,
            guided_matching=guided_matching,
            num_threads=num_threads,
            device=dev,
            progress=_scaled(progress, "matching"),
        )
        timed("matching", t0)

        # --- match-graph checks: fail fast before mapping ----------------------------
        t0 = time.perf_counter()
        graph = analyse_match_graph(database)
        timed("checks", t0)
        _check_graph(graph, len(names), min_registered_images, degenerate_max_general_ratio, scale)

        # --- mapping ----------------------------------------------------------------
        t0 = time.perf_counter()
        models = _map(
            database,
            image_dir,
            work_dir / "models",
            mapper=mapper,
            num_images=len(usable),
            min_model_size=min_registered_images,
            num_threads=num_threads,
            seed=seed,
            progress=_scaled(progress, "mapping"),
        )
        timed("mapping", t0)
        sizes = sorted((int(r.num_reg_images()) for r in models.values()), reverse=True)
        best = seed_model = _largest(models)
        refinement: dict[str, Any] = {}
        if best is not None and best.num_reg_images() < min(
            refine_below_ratio * len(names), len(usable)
        ):
            t0 = time.perf_counter()
            before = int(best.num_reg_images())
            best = _continue_mapping(database, image_dir, work_dir, best, num_threads, seed)
            refinement = {
                "registered_before": before,
                "registered_after": int(best.num_reg_images()),
            }
            sizes[0] = int(best.num_reg_images())
            timed("refinement", t0)

        registered = int(best.num_reg_images()) if best is not None else 0
        needed = max(min_registered_images, math.ceil(min_registered_ratio * len(names)))
        if best is None or registered < needed:
            if graph.general_pairs < min_registered_images:
                raise _degenerate(graph)
            raise JobFailed(
                "sfm_insufficient_registration",
                f"Only {registered} of {len(names)} images could be placed in one 3D model "
                f"(at least {needed} needed). "
                + _advice(
                    scale,
                    "overlapping views (each sharing about two thirds of the view with the "
                    "next), with steady, sharp frames of a textured, well-lit object.",
                ),
                {
                    "registered_images": registered,
                    "total_images": len(names),
                    "required_images": needed,
                    "models": sizes,
                    "match_graph": graph.as_dict(),
                    "image_size": scale.as_dict(),
                },
            )
        if registered < split_warning_ratio * len(names):
            hint = size_advice(scale)
            others, unplaced = _left_out(models, seed_model, best, names, featureless)
            placed = placement_warning(
                len(names), registered, others, [label(n) for n in unplaced], noun=noun
            )
            text = ". ".join(t for t in (placed, hint) if t)
            if text:
                warnings.append(text)

        # --- write ------------------------------------------------------------------
        t0 = time.perf_counter()
        sparse = work_dir / "sparse"
        sparse.mkdir()
        best.write_binary(str(sparse))
        timed("write", t0)
    except JobFailed as failure:
        timed("total", t_start)
        write_report(
            report_path,
            {
                "status": "failed",
                "code": failure.code,
                "message": failure.message,
                "details": failure.details,
                "total_images": len(names),
                "timings_s": timings,
            },
        )
        raise
    timed("total", t_start)

    summary = summarize(best)
    order = {n: i for i, n in enumerate(names)}
    reg_names = sorted((best.image(i).name for i in best.reg_image_ids()), key=order.__getitem__)
    result = SfMResult(
        image_dir=image_dir,
        model_dir=sparse,
        report_path=report_path,
        database_path=database,
        total_images=len(names),
        registered_images=summary.registered_images,
        points3d=summary.points3d,
        mean_reprojection_error_px=summary.mean_reprojection_error_px,
        mean_track_length=summary.mean_track_length,
        models=sizes,
        registered_names=reg_names,
        unregistered_names=[n for n in names if n not in set(reg_names)],
        matcher=matcher,
        camera_mode=camera_mode,
        camera_groups=len(groups),
        cameras=summary.cameras,
        device=dev.name,
        num_pairs=len(pairs),
        match_graph=graph.as_dict(),
        timings_s=timings,
        warnings=warnings,
        refinement=refinement,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    write_report(report_path, {"status": "ok", **result.as_dict()})
    progress(1.0, "done")
    return result


def _reset_work_dir(work_dir: Path) -> None:
    """Remove outputs of an earlier attempt (a retried job reuses its work dir)."""
    for name in ("database.db", "database.db-wal", "database.db-shm", "sfm_report.json"):
        (work_dir / name).unlink(missing_ok=True)
    for name in ("pairs", "models", "sparse"):
        shutil.rmtree(work_dir / name, ignore_errors=True)
    (work_dir / "models").mkdir(parents=True)


def _images_with_features(database: Path, names: list[str]) -> list[str]:
    """``names`` that COLMAP read and found keypoints in, in input order."""
    with pycolmap.Database.open(database) as db:
        ok = {im.name for im in db.read_all_images() if db.num_keypoints_for_image(im.image_id)}
    return [n for n in names if n in ok]


# --- stages ------------------------------------------------------------------------------
def _scaled(progress: Progress, stage: str) -> StageProgress:
    """Map a stage's own 0..1 progress onto its slice of the whole run."""
    lo, hi = next((a, b) for s, a, b in _STAGES if s == stage)

    def report(fraction: float) -> None:
        progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), stage)

    return report


def _extract(
    database: Path,
    image_dir: Path,
    groups: list[list[str]],
    *,
    camera_model: str,
    max_image_size: int,
    max_num_features: int,
    num_threads: int,
    device: pycolmap.Device,
    progress: StageProgress,
) -> None:
    """SIFT extraction in chunks (for progress), one shared camera per group."""
    total = sum(len(g) for g in groups)
    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = max_image_size
    options.num_threads = num_threads
    options.sift.max_num_features = max_num_features
    cpus = os.cpu_count() or 1
    done = 0
    progress(0.0)
    for group in groups:
        camera_id = -1
        chunk = max(4 * cpus, -(-total // 8))
        for start in range(0, len(group), chunk):
            names = group[start : start + chunk]
            reader = pycolmap.ImageReaderOptions()
            reader.camera_model = camera_model
            reader.existing_camera_id = camera_id
            pycolmap.extract_features(
                database,
                image_dir,
                image_names=names,
                camera_mode=pycolmap.CameraMode.SINGLE,
                reader_options=reader,
                extraction_options=options,
                device=device,
            )
            if camera_id < 0:
                with pycolmap.Database.open(database) as db:
                    first = db.read_image_with_name(names[0])
                    if first is not None:
                        camera_id = int(first.camera_id)
            done += len(names)
            progress(done / total)


def _match(
    database: Path,
    pairs_dir: Path,
    names: list[str],
    pairs: list[tuple[int, int]],
    *,
    max_num_matches: int,
    guided_matching: bool,
    num_threads: int,
    device: pycolmap.Device,
    progress: StageProgress,
) -> None:
    """Match ``pairs`` in chunks with SIFT and verify them (COLMAP ``match_image_pairs``)."""
    pairs_dir.mkdir(parents=True, exist_ok=True)
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = num_threads
    options.max_num_matches = max_num_matches
    options.guided_matching = guided_matching
    done = 0
    progress(0.0)
    for k, chunk in enumerate(chunked(pairs, 10)):
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = write_pairs_file(pairs_dir / f"pairs_{k:02d}.txt", names, chunk)
        pycolmap.match_image_pairs(database, options, pairing, device=device)
        done += len(chunk)
        progress(done / len(pairs))


def _map(
    database: Path,
    image_dir: Path,
    models_dir: Path,
    *,
    mapper: MapperName,
    num_images: int,
    min_model_size: int,
    num_threads: int,
    seed: int | None,
    progress: StageProgress,
) -> dict[int, pycolmap.Reconstruction]:
    models_dir.mkdir(parents=True, exist_ok=True)
    if mapper == "global":
        progress(0.0)
        global_options = pycolmap.GlobalPipelineOptions()
        models = pycolmap.global_mapping(database, image_dir, models_dir, global_options)
        progress(1.0)
        return dict(models)
    if mapper != "incremental":
        raise ValueError(f"unknown mapper {mapper!r}; expected incremental or global")
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = num_threads
    options.min_model_size = min_model_size
    if seed is not None:
        options.random_seed = seed
    registered = [0]

    def on_image() -> None:
        registered[0] += 1
        progress(min(registered[0] / max(num_images, 1), 1.0))

    progress(0.0)
    models = pycolmap.incremental_mapping(
        database, image_dir, models_dir, options, next_image_callback=on_image
    )
    return dict(models)


def _continue_mapping(
    database: Path,
    image_dir: Path,
    work_dir: Path,
    model: pycolmap.Reconstruction,
    num_threads: int,
    seed: int | None,
) -> pycolmap.Reconstruction:
    """Register the images left out of ``model`` with relaxed absolute-pose thresholds.

    Runs COLMAP's incremental pipeline again from ``model`` (``input_path``), single-model,
    with fewer required 2D-3D inliers and a larger pose error. Returns the larger of the
    continued model and ``model``.
    """
    seed_dir = work_dir / "models" / "seed"
    out_dir = work_dir / "models" / "continued"
    seed_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.write_binary(str(seed_dir))
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = num_threads
    options.multiple_models = False
    options.mapper.abs_pose_min_num_inliers = 15
    options.mapper.abs_pose_min_inlier_ratio = 0.15
    options.mapper.abs_pose_max_error = 16.0
    options.mapper.max_reg_trials = 6
    if seed is not None:
        options.random_seed = seed
    models = pycolmap.incremental_mapping(
        database, image_dir, out_dir, options, input_path=seed_dir
    )
    continued = _largest(dict(models))
    if continued is not None and continued.num_reg_images() > model.num_reg_images():
        return continued
    return model


def _left_out(
    models: dict[int, pycolmap.Reconstruction],
    seed_model: pycolmap.Reconstruction | None,
    best: pycolmap.Reconstruction,
    names: list[str],
    featureless: list[str],
) -> tuple[list[int], list[str]]:
    """Images outside the kept model ``best``: per other mapped model (not
    ``seed_model``, which ``best`` grew from), how many of its images ``best`` lacks,
    largest first, zeros dropped; and the names (input order) in no model, except
    ``featureless`` ones (reported on their own)."""
    kept = {best.image(i).name for i in best.reg_image_ids()}
    elsewhere: set[str] = set()
    counts = []
    for model in models.values():
        if model is seed_model:
            continue
        extra = {model.image(i).name for i in model.reg_image_ids()} - kept
        elsewhere |= extra
        counts.append(len(extra))
    counts = sorted((n for n in counts if n > 0), reverse=True)
    skip = kept | elsewhere | set(featureless)
    return counts, [n for n in names if n not in skip]


def _largest(models: dict[int, pycolmap.Reconstruction]) -> pycolmap.Reconstruction | None:
    if not models:
        return None
    return max(models.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))


def _advice(scale: FeatureScale, capture: str) -> str:
    """What to do: name ``max_image_size`` first when the images were downscaled small;
    ``capture`` completes "Capture more ..." (the advice on the capture)."""
    hint = size_advice(scale)
    if hint is None:
        return f"Capture more {capture}"
    return f"{hint} If it fails at full size too, capture more {capture}"


def _check_graph(
    graph: MatchGraphStats,
    total: int,
    min_images: int,
    degenerate_max_general_ratio: float,
    scale: FeatureScale,
) -> None:
    """Fail fast, before mapping, on duplicates, missing overlap or missing parallax."""
    counts = {
        "registered_images": 0,
        "total_images": total,
        "match_graph": graph.as_dict(),
        "image_size": scale.as_dict(),
    }
    if graph.distinct_views < min_images:
        raise JobFailed(
            "sfm_insufficient_registration",
            f"The {total} images show only {graph.distinct_views} distinct view(s) "
            f"(copies of the same photo or a camera that did not move); at least {min_images} "
            "different views around the object are needed.",
            counts,
        )
    if graph.verified_pairs == 0 or graph.largest_component < min_images:
        raise JobFailed(
            "sfm_insufficient_registration",
            f"No group of {min_images} or more of the {total} images overlaps: the largest "
            f"group of matching images has {graph.largest_component}. "
            + _advice(scale, "views, each sharing about two thirds of the view with the next."),
            counts,
        )
    if graph.general_ratio < degenerate_max_general_ratio:
        raise _degenerate(graph)


def _degenerate(graph: MatchGraphStats) -> JobFailed:
    return JobFailed(
        "degenerate_motion",
        "The camera turned or panned in place instead of moving around the object "
        f"({graph.general_pairs} of {graph.verified_pairs} matching image pairs show "
        "depth parallax), so no 3D shape can be recovered. Walk around the object, "
        "keeping it in view, instead of rotating the camera from one spot.",
        {"registered_images": 0, "total_images": graph.num_images, "match_graph": graph.as_dict()},
    )


_KNOWN_ABORTS = (
    ("NumRegImages() >= 2", "sfm_insufficient_registration"),
    ("NumRegFrames() >= 2", "sfm_insufficient_registration"),
    ("No good initial image pair", "degenerate_motion"),
)


def classify_native_abort(stderr_tail: str) -> JobFailed | None:
    """Map a COLMAP/glog abort message (a crashed child's stderr) to a clear ``JobFailed``.

    pycolmap aborts the process with ``Check failed: NumRegImages() >= 2`` when a model
    shrinks below two images during bundle adjustment (colmap #2487, hloc #406). The
    worker, seeing ``ChildCrashed``, can call this to fail the job with a code instead of
    retrying it. Returns None when the message is not a known SfM abort.
    """
    for needle, code in _KNOWN_ABORTS:
        if needle in stderr_tail:
            return JobFailed(
                code,
                "Structure from motion stopped: too few images could be placed in one 3D "
                "model. Capture more overlapping views while walking around the object.",
                {"native_message": needle},
            )
    return None
