"""Structure-from-motion benchmark: ARForge's ``run_sfm`` against COLMAP's own CLI.

Prints figures; it is not a test. For each case (real captures under ``../shared/data``):
registered / total images, models found, mean reprojection error, 3D points, time per
stage, peak memory, and for the fox photos the camera-centre error against the dataset
authors' poses (``fox/transforms.json``) after a similarity alignment (Umeyama, "Least-
squares estimation of transformation parameters between two point patterns", PAMI 1991),
as a percentage of the reference cameras' extent (bounding-box diagonal). The same frames
then go through Debian's ``colmap`` CLI (CPU SIFT; ``apt-get install -y colmap``) for time
and registered images.

    .venv/bin/python bench/photogrammetry/sfm_bench.py                 # every case
    .venv/bin/python bench/photogrammetry/sfm_bench.py --cases skull --no-colmap

Each run happens in a child process (as the worker runs it), so peak memory is the
child's own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


@dataclass
class Case:
    name: str
    images: Path | None  # a folder of photos, or None when frames come from ``video``
    matcher: str  # what run_sfm and the CLI use
    max_image_size: int
    ordered: bool = False
    video: Path | None = None
    max_frames: int = 50
    reference: Path | None = None  # transforms.json with camera-to-world poses
    options: dict[str, Any] = field(default_factory=dict)
    colmap_single_camera: tuple[int, ...] = (1,)


CASES = {
    "fox_images": Case(
        "fox_images",
        DATA / "fox" / "images",
        "sequential",
        1024,
        ordered=True,
        reference=DATA / "fox" / "transforms.json",
    ),
    "fox_video": Case(
        "fox_video",
        None,
        "sequential",
        1024,
        ordered=True,
        video=DATA / "fox" / "fox-walkaround.mp4",
        max_frames=50,
    ),
    "skull": Case("skull", DATA / "skull" / "images", "exhaustive", 1200),
    "skull_video": Case(
        "skull_video",
        None,
        "sequential",
        1200,
        ordered=True,
        video=DATA / "skull" / "skull-walkaround.mp4",
        max_frames=60,
    ),
    "skull_all66": Case(
        "skull_all66",
        DATA / "skull" / "all66",
        "exhaustive",
        1200,
        colmap_single_camera=(0, 1),
    ),
}


# --- geometry ---------------------------------------------------------------------------
def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum |s R src_i + t - dst_i|^2; src, dst (N, 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    rot = u @ sign @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float(np.trace(np.diag(d) @ sign) / var_s)
    return scale, rot, mu_d - scale * rot @ mu_s


def reference_centres(transforms: Path) -> dict[str, np.ndarray]:
    """Camera centres by image file name from a NeRF ``transforms.json`` (camera-to-world;
    the OpenGL axis convention changes the rotation only, not the centre)."""
    frames = json.loads(transforms.read_text())["frames"]
    return {
        Path(f["file_path"]).name: np.asarray(f["transform_matrix"], dtype=float)[:3, 3]
        for f in frames
    }


def centre_error(model_dir: Path, reference: Path) -> dict[str, float]:
    import pycolmap

    model = pycolmap.Reconstruction(str(model_dir))
    ours = {im.name: np.asarray(im.projection_center()) for im in model.images.values()}
    ref = reference_centres(reference)
    common = sorted(set(ours) & set(ref))
    if len(common) < 3:
        return {"matched": len(common)}
    src = np.array([ours[n] for n in common])
    dst = np.array([ref[n] for n in common])
    s, r, t = umeyama(src, dst)
    err = np.linalg.norm((s * (r @ src.T)).T + t - dst, axis=1)
    extent = float(np.linalg.norm(dst.max(0) - dst.min(0)))
    return {
        "matched": len(common),
        "mean_pct": round(100 * float(err.mean()) / extent, 3),
        "max_pct": round(100 * float(err.max()) / extent, 3),
    }


# --- runs ---------------------------------------------------------------------------------
_CHILD = """
import json, resource, sys
from arforge.photogrammetry.sfm import run_sfm
a = json.loads(sys.argv[1])
r = run_sfm(a["images"], a["work"], matcher=a["matcher"], ordered=a["ordered"],
            max_image_size=a["size"], **a["options"])
u = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT " + json.dumps({**r.as_dict(), "cpu_s": round(u.ru_utime + u.ru_stime, 1)}))
"""


def run_ours(case: Case, images: Path, work: Path) -> dict[str, Any]:
    arg = {
        "images": str(images),
        "work": str(work),
        "matcher": case.matcher,
        "ordered": case.ordered,
        "size": case.max_image_size,
        "options": case.options,
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(arg)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        return {"error": (proc.stderr or proc.stdout)[-600:], "wall_s": round(wall, 1)}
    out: dict[str, Any] = json.loads(line[7:])
    out["wall_s"] = round(wall, 1)
    if case.reference:
        out["centre_error"] = centre_error(Path(out["model_dir"]), case.reference)
    return out


def _timed(argv: list[str], log: Path) -> tuple[float, float, float, int]:
    """Run ``argv`` under /usr/bin/time: (wall s, peak RSS MiB, CPU s, return code)."""
    stats = log.with_suffix(".time")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    with log.open("w") as fh:
        rc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M %U %S", "-o", str(stats), *argv],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        ).returncode
    wall, rss_kb, user, system = stats.read_text().split()[-4:]
    return float(wall), float(rss_kb) / 1024, float(user) + float(system), rc


def run_colmap(case: Case, images: Path, work: Path, single_camera: int) -> dict[str, Any]:
    """COLMAP CLI: feature_extractor, sequential/exhaustive matcher, mapper, CPU SIFT."""
    colmap = shutil.which("colmap")
    if colmap is None:
        return {"error": "colmap CLI not installed (apt-get install -y colmap)"}
    work.mkdir(parents=True, exist_ok=True)
    db, sparse = work / "database.db", work / "sparse"
    sparse.mkdir(exist_ok=True)
    steps = {
        "features": [
            colmap, "feature_extractor", "--database_path", str(db), "--image_path", str(images),
            "--ImageReader.camera_model", "SIMPLE_RADIAL",
            "--ImageReader.single_camera", str(single_camera),
            "--SiftExtraction.use_gpu", "0",
            "--SiftExtraction.max_image_size", str(case.max_image_size),
        ],
        "matching": [
            colmap, f"{case.matcher}_matcher", "--database_path", str(db),
            "--SiftMatching.use_gpu", "0",
        ],
        "mapping": [
            colmap, "mapper", "--database_path", str(db), "--image_path", str(images),
            "--output_path", str(sparse),
        ],
    }  # fmt: skip
    timings: dict[str, float] = {}
    peak = cpu = 0.0
    for stage, argv in steps.items():
        wall, rss, used, rc = _timed(argv, work / f"{stage}.log")
        timings[stage] = round(wall, 2)
        peak, cpu = max(peak, rss), cpu + used
        if rc != 0:
            return {"error": f"{stage} exited {rc}", "timings_s": timings}
    timings["total"] = round(sum(timings.values()), 2)
    import pycolmap

    models = []
    for sub in sorted(p for p in sparse.iterdir() if p.is_dir()):
        rec = pycolmap.Reconstruction(str(sub))
        models.append((rec.num_reg_images(), rec.compute_mean_reprojection_error(), sub))
    models.sort(key=lambda m: -m[0])
    out: dict[str, Any] = {
        "single_camera": single_camera,
        "models": [m[0] for m in models],
        "registered_images": models[0][0] if models else 0,
        "mean_reprojection_error_px": round(models[0][1], 3) if models else None,
        "timings_s": timings,
        "peak_rss_mb": round(peak, 1),
        "cpu_s": round(cpu, 1),
    }
    if case.reference and models:
        out["centre_error"] = centre_error(models[0][2], case.reference)
    return out


def prepare_images(case: Case, tmp: Path) -> tuple[Path, dict[str, Any]]:
    if case.images is not None:
        return case.images, {}
    from arforge.photogrammetry.frames import extract_keyframes

    assert case.video is not None
    t0 = time.perf_counter()
    report = extract_keyframes(
        case.video,
        tmp / "frames",
        max_frames=case.max_frames,
        max_image_size=case.max_image_size,
    )
    info = {"keyframes_s": round(time.perf_counter() - t0, 1)}
    kept = getattr(report, "kept", None)
    if kept is not None:
        info["kept"] = kept
    return tmp / "frames", info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--no-colmap", action="store_true", help="skip the COLMAP CLI runs")
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sfm-bench-") as tmpname:
        tmp = Path(tmpname)
        for name in args.cases.split(","):
            case = CASES[name]
            src = case.images or case.video
            if src is None or not src.exists():
                print(f"{name}: data missing ({src}); skipped")
                continue
            images, prep = prepare_images(case, tmp / name)
            total = len([p for p in images.iterdir() if p.is_file()])
            ours = run_ours(case, images, tmp / name / "ours")
            entry: dict[str, Any] = {"images": total, "prepare": prep, "arforge": ours}
            if not args.no_colmap:
                entry["colmap"] = [
                    run_colmap(case, images, tmp / name / f"colmap{sc}", sc)
                    for sc in case.colmap_single_camera
                ]
            results[name] = entry
            print_case(name, entry)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def print_case(name: str, entry: dict[str, Any]) -> None:
    ours = entry["arforge"]
    print(f"\n== {name}: {entry['images']} images {entry['prepare'] or ''}")
    if "error" in ours:
        print(f"  arforge  ERROR {ours['error']}")
    else:
        t = ours["timings_s"]
        print(
            f"  arforge  {ours['registered_images']}/{ours['total_images']} registered "
            f"({ours['registered_ratio']:.0%}), models {ours['models']}, "
            f"{ours['points3d']} points, {ours['mean_reprojection_error_px']:.3f} px, "
            f"peak {ours['peak_rss_mb']:.0f} MiB, CPU {ours['cpu_s']:.0f} s, "
            f"{ours['num_pairs']} pairs ({ours['matcher']})"
        )
        print("           time " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()))
        if ours.get("refinement"):
            print(f"           refinement {ours['refinement']}")
        if ours.get("centre_error"):
            print(f"           camera-centre error {ours['centre_error']}")
    for cm in entry.get("colmap", []):
        if "error" in cm:
            print(f"  colmap   ERROR {cm['error']}")
            continue
        t = cm["timings_s"]
        print(
            f"  colmap   single_camera={cm['single_camera']}: {cm['registered_images']}/"
            f"{entry['images']} registered, models {cm['models']}, "
            f"{cm['mean_reprojection_error_px']} px, peak {cm['peak_rss_mb']:.0f} MiB, "
            f"CPU {cm['cpu_s']:.0f} s"
        )
        print("           time " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()))
        if cm.get("centre_error"):
            print(f"           camera-centre error {cm['centre_error']}")


if __name__ == "__main__":
    main()
