"""Test job types and handlers for the runtime tests, usable in-process or as a worker
process (``python tests/integration/runtime_support.py <nats_url> <store_root> <runs_dir>``).

Every attempt appends a line ``<job_id> <attempt>`` to ``<runs_dir>/<job_id>.runs`` so a
test can count how many times a job really ran.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from arforge.shared.contracts import JobResult, JobSpec, Registry, RetryPolicy
from arforge.shared.errors import JobFailed, Retry
from arforge.shared.runtime import JobContext
from arforge.shared.settings import WorkerSettings


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 0.0
    fail_times: int = 0  # raise Retry on the first N attempts
    fail_code: str | None = None  # raise JobFailed(code)
    spawn_tree: bool = False  # start a process tree and wait on it
    abort: bool = False  # native abort in an isolated child
    artifact: bool = True


def sleep_registry(delays: tuple[float, ...] = (0.5, 1.0), timeout_s: float = 60) -> Registry:
    policy = RetryPolicy(delays_s=delays, timeout_s=timeout_s, jitter=0.1)
    return Registry(
        [
            JobSpec(
                type="sleep",
                description="test job",
                params=SleepParams,
                result=JobResult,
                policy=policy,
            ),
        ]
    )


def runs_dir() -> Path:
    return Path(os.environ["ARFORGE_TEST_RUNS_DIR"])


def sleep_token(job_id: str) -> str:
    """A sleep duration unique to the job, so tests can find exactly its processes."""
    return f"300.{int(job_id.replace('-', '')[:8], 16) % 10**6:06d}"


def _abort_now(on_progress) -> None:  # type: ignore[no-untyped-def]
    on_progress(0.5, "about to abort")
    os.abort()


async def handle_sleep(ctx: JobContext, params: SleepParams) -> JobResult:
    with (runs_dir() / f"{ctx.job_id}.runs").open("a") as f:
        f.write(f"{ctx.job_id} {ctx.attempt} {time.time():.3f}\n")
    if params.fail_code:
        raise JobFailed(params.fail_code, "told to fail")
    if ctx.attempt <= params.fail_times:
        raise Retry(f"planned failure {ctx.attempt}", code="planned")
    if params.abort:
        await ctx.run_isolated(_abort_now)
    if params.spawn_tree:
        out = ctx.workdir / "partial.bin"
        out.write_bytes(b"x" * 10)
        await ctx.put_artifact("partial.bin", out)
        (runs_dir() / f"{ctx.job_id}.tree").write_text("started")
        t = sleep_token(ctx.job_id)
        await ctx.run_process(["sh", "-c", f"sleep {t} & sleep {t} & wait"])
    steps = max(int(params.seconds / 0.1), 1)
    for i in range(steps):
        await asyncio.sleep(params.seconds / steps)
        ctx.progress((i + 1) / steps, "sleeping")
    artifacts = []
    if params.artifact:
        out = ctx.workdir / "out.txt"
        out.write_text(f"done {ctx.job_id}")
        artifacts.append(await ctx.put_artifact("out.txt", out, "text/plain"))
    return JobResult(artifacts=artifacts)


def main() -> None:
    from arforge.shared import aio
    from arforge.shared.bus import connect
    from arforge.shared.runtime import Worker
    from arforge.shared.storage import LocalStore

    url, store_root, runs, ack_wait, grace = sys.argv[1:6]
    os.environ["ARFORGE_TEST_RUNS_DIR"] = runs

    async def run() -> None:
        import signal

        bus = await connect(url, name="test-worker")
        worker = Worker(
            bus,
            LocalStore(Path(store_root)),
            {"sleep": handle_sleep},
            registry=sleep_registry(),
            settings=WorkerSettings(
                concurrency=2,
                ack_wait_s=float(ack_wait),
                drain_grace_s=float(grace),
                idle_poll_s=0.2,
                workdir=Path(runs) / "work",
            ),
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, worker.shutdown)
        print("READY", flush=True)
        await worker.run()
        await bus.close()

    aio.run(run())  # the event loop run_worker uses


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()


def spawn_worker(
    url: str, store_root: Path, runs: Path, *, ack_wait: float = 2.0, grace: float = 5.0
) -> subprocess.Popen:  # type: ignore[type-arg]
    """Start a worker process and wait for it to be ready."""
    proc = subprocess.Popen(
        [sys.executable, __file__, url, str(store_root), str(runs), str(ack_wait), str(grace)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", line
    return proc
