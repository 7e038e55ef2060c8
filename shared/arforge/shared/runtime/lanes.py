"""Priority lanes with an anti-starvation rule (pure logic, no I/O).

Lanes are polled high -> default -> low. Each lane remembers whether it *may* have work
(set by a publish notification or a successful fetch, cleared by an empty fetch). When a
higher lane is served while a lower one may have work, the lower lane's ``skipped``
count grows; once it reaches ``starvation_limit`` that lane is tried first. So with a
limit of ``K``, a waiting low job is passed over at most ``K`` times (about ``K`` job
slots, i.e. ``K * job_duration / concurrency`` of wall time) however many high jobs
keep arriving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..contracts import PRIORITIES


@dataclass
class Lane:
    job_type: str
    priority: str
    rank: int  # 0 = high
    may_have_work: bool = True
    skipped: int = 0
    notified_at: float = 0.0  # monotonic time of the last publish notification

    @property
    def key(self) -> tuple[str, str]:
        return (self.job_type, self.priority)


@dataclass
class LaneScheduler:
    job_types: list[str]
    starvation_limit: int = 10
    lanes: list[Lane] = field(init=False)
    _rr: int = 0

    def __post_init__(self) -> None:
        self.lanes = [
            Lane(t, p.value, rank) for rank, p in enumerate(PRIORITIES) for t in self.job_types
        ]
        self._by_key = {lane.key: lane for lane in self.lanes}

    def lane(self, job_type: str, priority: str) -> Lane | None:
        return self._by_key.get((job_type, priority))

    def order(self) -> list[Lane]:
        """Lanes to try, in order: starving lanes first, then by priority.

        Types of equal priority rotate so one busy type cannot hog a shared worker.
        """
        n = len(self.job_types)
        self._rr = (self._rr + 1) % max(n, 1)
        by_prio = sorted(
            self.lanes,
            key=lambda ln: (ln.rank, (self.job_types.index(ln.job_type) - self._rr) % n),
        )
        starving = [ln for ln in by_prio if ln.skipped >= self.starvation_limit]
        starving.sort(key=lambda ln: -ln.skipped)
        rest = [ln for ln in by_prio if ln not in starving]
        return [ln for ln in starving + rest if ln.may_have_work]

    def served(self, lane: Lane) -> None:
        """Record that ``lane`` produced a job."""
        lane.may_have_work = True
        lane.skipped = 0
        for other in self.lanes:
            if other.rank > lane.rank and other.may_have_work:
                other.skipped += 1

    def empty(self, lane: Lane) -> None:
        lane.may_have_work = False
        lane.skipped = 0

    def notify(self, job_type: str, priority: str) -> None:
        ln = self.lane(job_type, priority)
        if ln is not None:
            ln.may_have_work = True
            ln.notified_at = time.monotonic()

    def mark_all(self) -> None:
        """Assume every lane may have work (periodic poll: delayed naks come due)."""
        for ln in self.lanes:
            ln.may_have_work = True
