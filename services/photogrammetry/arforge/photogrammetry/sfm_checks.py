"""Checks on the verified match graph before mapping: duplicates, overlap, parallax.

They turn inputs on which incremental mapping fails slowly, aborts, or returns a
meaningless model into clear failures, in seconds after matching:

* duplicate views (copies of one photo, a camera held still): a verified pair whose
  inlier matches barely move (median displacement under ``duplicate_max_shift_px``);
* no overlap (unrelated photos): no verified pair, or a largest connected component of
  the match graph smaller than the minimum model;
* no parallax (pure rotation, panning, sliding crops of one photo): almost every verified
  pair is explained by a homography. COLMAP's two-view verification labels such pairs
  ``PLANAR``/``PANORAMIC``/``PLANAR_OR_PANORAMIC`` when the homography explains most
  of the epipolar inliers (``max_H_inlier_ratio``; Schönberger & Frahm, CVPR 2016, §4.2),
  and a pair needs a general (``CALIBRATED``/``UNCALIBRATED``) geometry with enough
  triangulation angle to initialise a reconstruction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pycolmap

_TVG = pycolmap.TwoViewGeometryConfiguration
GENERAL_CONFIGS = frozenset(
    int(c) for c in (_TVG.CALIBRATED, _TVG.UNCALIBRATED, _TVG.CALIBRATED_RIG)
)
HOMOGRAPHY_CONFIGS = frozenset(
    int(c) for c in (_TVG.PLANAR, _TVG.PANORAMIC, _TVG.PLANAR_OR_PANORAMIC)
)


@dataclass
class MatchGraphStats:
    """Summary of the verified two-view geometries in a COLMAP database.

    Pair counts exclude duplicate pairs except ``duplicate_pairs`` itself.
    ``components`` lists connected-component sizes of the verified (non-duplicate) graph,
    largest first, with isolated images as components of size 1.
    """

    num_images: int
    verified_pairs: int = 0
    general_pairs: int = 0
    homography_pairs: int = 0
    duplicate_pairs: int = 0
    distinct_views: int = 0
    components: list[int] = field(default_factory=list)

    @property
    def general_ratio(self) -> float:
        """Share of verified pairs with general (non-homography) two-view geometry."""
        return self.general_pairs / self.verified_pairs if self.verified_pairs else 0.0

    @property
    def largest_component(self) -> int:
        return self.components[0] if self.components else 0

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["general_ratio"] = round(self.general_ratio, 4)
        return d


class _UnionFind:
    def __init__(self, items: list[int]) -> None:
        self.parent = {i: i for i in items}

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def sizes(self) -> list[int]:
        counts: dict[int, int] = {}
        for i in self.parent:
            r = self.find(i)
            counts[r] = counts.get(r, 0) + 1
        return sorted(counts.values(), reverse=True)


def analyse_match_graph(
    database_path: Path, *, min_inliers: int = 15, duplicate_max_shift_px: float = 1.0
) -> MatchGraphStats:
    """Read the two-view geometries of ``database_path`` and classify them.

    ``min_inliers``: pairs with fewer inlier matches are ignored (COLMAP's own
    ``min_num_inliers`` default is 15). Keypoint coordinates are in the pixels of the
    original images, so ``duplicate_max_shift_px`` is too.
    """
    with pycolmap.Database.open(database_path) as db:
        image_ids = [int(im.image_id) for im in db.read_all_images()]
        pair_ids, geometries = db.read_two_view_geometries()
        stats = MatchGraphStats(num_images=len(image_ids))
        dup = _UnionFind(image_ids)
        graph = _UnionFind(image_ids)
        keypoints: dict[int, np.ndarray] = {}

        def xy(image_id: int) -> np.ndarray:
            if image_id not in keypoints:
                keypoints[image_id] = np.asarray(db.read_keypoints(image_id))[:, :2]
            return keypoints[image_id]

        for pair_id, geometry in zip(pair_ids, geometries, strict=True):
            inliers = np.asarray(geometry.inlier_matches)
            if len(inliers) < min_inliers:
                continue
            id1, id2 = (int(v) for v in pycolmap.pair_id_to_image_pair(pair_id))
            shift = np.linalg.norm(xy(id1)[inliers[:, 0]] - xy(id2)[inliers[:, 1]], axis=1)
            if float(np.median(shift)) < duplicate_max_shift_px:
                stats.duplicate_pairs += 1
                dup.union(id1, id2)
                continue
            stats.verified_pairs += 1
            graph.union(id1, id2)
            config = int(geometry.config)
            if config in GENERAL_CONFIGS:
                stats.general_pairs += 1
            elif config in HOMOGRAPHY_CONFIGS:
                stats.homography_pairs += 1
    stats.distinct_views = len(dup.sizes())
    stats.components = graph.sizes()
    return stats
