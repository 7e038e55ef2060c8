"""Prometheus metrics computed at scrape time from PostgreSQL and JetStream.

| metric | type | labels | source |
|---|---|---|---|
| ``arforge_jobs`` | gauge | type, status | ``jobs`` rows |
| ``arforge_lane_depth`` | gauge | type, priority | JetStream consumer ``num_pending`` |
| ``arforge_job_duration_seconds`` | histogram | type | completed jobs, finished - started |
| ``arforge_job_retries_total`` | counter | type | ``job.retrying`` events stored |
| ``arforge_dead_letters_total`` | counter | type, reason | ``dead_letters`` rows |
| ``arforge_dead_letters_pending`` | gauge | type | dead letters not replayed |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

DURATION_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


@dataclass
class Snapshot:
    jobs: list[tuple[str, str, int]] = field(default_factory=list)
    lanes: dict[tuple[str, str], int] = field(default_factory=dict)
    # type -> (cumulative bucket counts, sum seconds, count)
    durations: dict[str, tuple[list[int], float, int]] = field(default_factory=dict)
    retries: list[tuple[str, int]] = field(default_factory=list)
    dead_letters: list[tuple[str, str, int, int]] = field(default_factory=list)


async def take_snapshot(pool: Any, bus: Any | None, registry: Any) -> Snapshot:
    """Query everything the scrape reports (a handful of aggregate queries)."""
    snap = Snapshot()
    rows = await pool.fetch("SELECT type, status, count(*) AS n FROM jobs GROUP BY 1, 2")
    snap.jobs = [(r["type"], r["status"], r["n"]) for r in rows]
    bucket_cols = ", ".join(
        f"count(*) FILTER (WHERE d <= {b}) AS b{i}" for i, b in enumerate(DURATION_BUCKETS_S)
    )
    rows = await pool.fetch(
        f"SELECT type, {bucket_cols}, coalesce(sum(d), 0) AS s, count(*) AS n FROM ("
        " SELECT type, extract(epoch FROM finished_at - started_at) AS d FROM jobs"
        " WHERE status = 'completed' AND started_at IS NOT NULL AND finished_at IS NOT NULL"
        ") t GROUP BY type"
    )
    for r in rows:
        counts = [r[f"b{i}"] for i in range(len(DURATION_BUCKETS_S))]
        snap.durations[r["type"]] = (counts, float(r["s"]), r["n"])
    rows = await pool.fetch(
        "SELECT data->>'type' AS type, count(*) AS n FROM job_events"
        " WHERE type = 'job.retrying' GROUP BY 1"
    )
    snap.retries = [(r["type"] or "unknown", r["n"]) for r in rows]
    rows = await pool.fetch(
        "SELECT j.type, d.reason, count(*) AS n,"
        " count(*) FILTER (WHERE d.replayed_at IS NULL) AS pending"
        " FROM dead_letters d JOIN jobs j ON j.id = d.job_id GROUP BY 1, 2"
    )
    snap.dead_letters = [(r["type"], r["reason"], r["n"], r["pending"]) for r in rows]
    if bus is not None:
        snap.lanes = await bus.lane_depths(registry)
    return snap


class _SnapshotCollector:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterable[Metric]:
        s = self.snap
        g = GaugeMetricFamily("arforge_jobs", "Jobs by type and status", labels=["type", "status"])
        for t, st, n in s.jobs:
            g.add_metric([t, st], n)
        yield g
        g = GaugeMetricFamily(
            "arforge_lane_depth", "Job messages waiting per lane", labels=["type", "priority"]
        )
        for (t, p), n in sorted(s.lanes.items()):
            g.add_metric([t, p], n)
        yield g
        h = HistogramMetricFamily(
            "arforge_job_duration_seconds",
            "Run time of completed jobs (started -> finished)",
            labels=["type"],
        )
        for t, (counts, total, n) in sorted(s.durations.items()):
            buckets = [(str(float(b)), c) for b, c in zip(DURATION_BUCKETS_S, counts, strict=True)]
            buckets.append(("+Inf", n))
            h.add_metric([t], buckets, total)
        yield h
        c = CounterMetricFamily("arforge_job_retries", "Retried attempts", labels=["type"])
        for t, n in s.retries:
            c.add_metric([t], n)
        yield c
        c = CounterMetricFamily(
            "arforge_dead_letters", "Dead-lettered job runs", labels=["type", "reason"]
        )
        pending: dict[str, int] = {}
        for t, reason, n, waiting in s.dead_letters:
            c.add_metric([t, reason], n)
            pending[t] = pending.get(t, 0) + waiting
        yield c
        g = GaugeMetricFamily(
            "arforge_dead_letters_pending", "Dead letters not yet replayed", labels=["type"]
        )
        for t, waiting in sorted(pending.items()):
            g.add_metric([t], waiting)
        yield g


def render(snap: Snapshot) -> bytes:
    """The Prometheus text exposition of ``snap``."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_SnapshotCollector(snap))  # type: ignore[arg-type]
    return generate_latest(reg)
