"""The job runtime against a real nats-server: exactly-once under long jobs, crashes,
retries with backoff and dead letters, priorities, cancellation, drain, server restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import itertools

from runtime_support import handle_sleep, sleep_registry, sleep_token, spawn_worker

from arforge.shared.bus import DLQ, EVENTS, Bus, connect
from arforge.shared.contracts import Event, JobMessage, Priority
from arforge.shared.runtime import Worker
from arforge.shared.settings import WorkerSettings
from arforge.shared.storage import LocalStore


def job(priority: str = "default", run: int = 1, **params: object) -> JobMessage:
    return JobMessage(
        job_id=str(uuid.uuid4()),
        type="sleep",
        priority=Priority(priority),
        tenant_id="t1",
        run=run,
        params=params,
        submitted_at=datetime.now(UTC),
    )


async def events_of(bus: Bus, job_id: str | None = None) -> list[Event]:
    """Every event in the EVENTS stream (optionally for one job), in stream order."""
    info = await bus.js.stream_info(EVENTS)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await bus.js.get_msg(EVENTS, seq)
        except Exception:
            continue
        assert raw.data is not None
        ev = Event.model_validate_json(raw.data)
        if job_id is None or ev.subject == job_id:
            out.append(ev)
    return out


async def wait_for_event(bus: Bus, job_id: str, etype: str, timeout: float = 30) -> list[Event]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evs = await events_of(bus, job_id)
        if any(e.type == etype for e in evs):
            return evs
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {etype} for {job_id}; saw {[e.type for e in evs]}")


async def wait_until_running(env: dict[str, Path], j: JobMessage, timeout: float = 20) -> None:
    """Until the handler of ``j`` has recorded its first run (the job is mid-attempt)."""
    deadline = time.monotonic() + timeout
    while not runs(env["runs"], j.job_id):
        assert time.monotonic() < deadline, f"job {j.job_id} did not start"
        await asyncio.sleep(0.05)


def runs(runs_path: Path, job_id: str) -> list[int]:
    f = runs_path / f"{job_id}.runs"
    if not f.exists():
        return []
    return [int(line.split()[1]) for line in f.read_text().splitlines()]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    runs_path = tmp_path / "runs"
    runs_path.mkdir()
    monkeypatch.setenv("ARFORGE_TEST_RUNS_DIR", str(runs_path))
    return {"runs": runs_path, "store": tmp_path / "store", "work": tmp_path / "work"}


@pytest.fixture
async def bus(nats_server):  # type: ignore[no-untyped-def]
    b = await connect(nats_server.url, name="test")
    await b.ensure_topology(sleep_registry(), ack_wait_s=1.0)
    yield b
    await b.close()


class InProcessWorker:
    def __init__(self, bus: Bus, env: dict[str, Path], **settings: object) -> None:
        base: dict[str, object] = dict(
            concurrency=2, ack_wait_s=1.0, idle_poll_s=0.2, drain_grace_s=5.0, workdir=env["work"]
        )
        base.update(settings)
        self.worker = Worker(
            bus,
            LocalStore(env["store"]),
            {"sleep": handle_sleep},
            registry=sleep_registry(),
            settings=WorkerSettings(**base),
        )
        self.task: asyncio.Task | None = None  # type: ignore[type-arg]

    async def __aenter__(self) -> Worker:
        self.task = asyncio.create_task(self.worker.run())
        return self.worker

    async def __aexit__(self, *exc: object) -> None:
        self.worker.shutdown()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)


async def test_job_lasting_three_ack_waits_runs_exactly_once(bus, env):  # type: ignore[no-untyped-def]
    j = job(seconds=3.5)
    async with InProcessWorker(bus, env), InProcessWorker(bus, env):
        await bus.submit(j)
        evs = await wait_for_event(bus, j.job_id, "job.completed", 30)
        await asyncio.sleep(2.5)  # long enough for a wrongful redelivery to show
    assert runs(env["runs"], j.job_id) == [1]
    assert Counter(e.type for e in await events_of(bus, j.job_id))["job.started"] == 1
    done = next(e for e in evs if e.type == "job.completed")
    assert done.data["result"]["artifacts"][0]["key"] == f"jobs/{j.job_id}/out.txt"
    progress = [e for e in evs if e.type == "job.progress"]
    assert 2 <= len(progress) <= 8  # ~1/s over 3.5 s, throttled from 35 reports
    assert progress[-1].data["stage"] == "sleeping"


async def test_duplicate_submit_is_dropped(bus, env):  # type: ignore[no-untyped-def]
    j = job(seconds=0.1)
    await bus.submit(j)
    await bus.submit(j)
    async with InProcessWorker(bus, env):
        await wait_for_event(bus, j.job_id, "job.completed")
        await asyncio.sleep(0.5)
    assert runs(env["runs"], j.job_id) == [1]


async def test_retries_follow_policy_then_dead_letter_then_replay(bus, env):  # type: ignore[no-untyped-def]
    # policy: delays 0.5 s, 1.0 s (+<=10% jitter) -> 3 attempts, all planned to fail.
    j = job(fail_times=5)
    async with InProcessWorker(bus, env, idle_poll_s=0.05):
        await bus.submit(j)
        evs = await wait_for_event(bus, j.job_id, "job.dead_lettered", 30)
    assert runs(env["runs"], j.job_id) == [1, 2, 3]
    lines = (env["runs"] / f"{j.job_id}.runs").read_text().splitlines()
    t = [float(line.split()[2]) for line in lines]
    assert 0.5 <= t[1] - t[0] < 0.5 * 1.1 + 0.6
    assert 1.0 <= t[2] - t[1] < 1.0 * 1.1 + 0.6
    retrying = [e for e in evs if e.type == "job.retrying"]
    assert [e.data["attempt"] for e in retrying] == [1, 2]
    assert 0.5 <= retrying[0].data["delay_s"] <= 0.55
    failed = next(e for e in evs if e.type == "job.failed")
    assert failed.data["error"]["code"] == "attempts_exhausted"
    assert failed.data["error"]["last_code"] == "planned"
    dl = next(e for e in evs if e.type == "job.dead_lettered")
    raw = await bus.js.get_msg(DLQ, dl.data["dlq_seq"])
    assert raw.headers is not None and raw.headers["Arforge-Reason"] == "attempts_exhausted"
    assert JobMessage.model_validate_json(raw.data or b"").job_id == j.job_id

    # Replay: run 2 of the same job, which now succeeds (fail_times counts attempts of a run).
    replay = j.model_copy(update={"run": 2, "params": {"fail_times": 0}})
    async with InProcessWorker(bus, env):
        await bus.submit(replay)
        evs = await wait_for_event(bus, j.job_id, "job.completed")
    done = [e for e in evs if e.type == "job.completed"]
    assert len(done) == 1 and done[0].data["run"] == 2
    assert await bus.delete_dead_letter(j.job_id)


async def test_job_failed_is_terminal_without_retry(bus, env):  # type: ignore[no-untyped-def]
    j = job(fail_code="bad_capture")
    async with InProcessWorker(bus, env):
        await bus.submit(j)
        evs = await wait_for_event(bus, j.job_id, "job.failed")
        await asyncio.sleep(1.5)
    assert runs(env["runs"], j.job_id) == [1]
    failed = next(e for e in evs if e.type == "job.failed")
    assert failed.data["error"]["code"] == "bad_capture"


async def test_invalid_params_fail_with_code(bus, env):  # type: ignore[no-untyped-def]
    j = job(seconds="soon")
    async with InProcessWorker(bus, env):
        await bus.submit(j)
        evs = await wait_for_event(bus, j.job_id, "job.failed")
    assert next(e for e in evs if e.type == "job.failed").data["error"]["code"] == "invalid_params"


async def test_high_priority_job_starts_before_queued_default_jobs(bus, env):  # type: ignore[no-untyped-def]
    defaults = [job("default", seconds=0.05, artifact=False) for _ in range(20)]
    for d in defaults:
        await bus.submit(d)
    high = job("high", seconds=0.05, artifact=False)
    await bus.submit(high)
    async with InProcessWorker(bus, env, concurrency=1):
        await wait_for_event(bus, defaults[-1].job_id, "job.completed", 60)
    started = [e.subject for e in await events_of(bus) if e.type == "job.started"]
    assert started[0] == high.job_id
    assert started[1:] == [d.job_id for d in defaults]  # FIFO within a lane


async def test_low_jobs_complete_under_a_flood_of_high_jobs(bus, env):  # type: ignore[no-untyped-def]
    """Anti-starvation bound: with starvation_limit K, a waiting low job is passed over
    at most K times. Here K=5 and high jobs keep arriving faster than they are served."""
    lows = [job("low", seconds=0.02, artifact=False) for _ in range(3)]
    stop = asyncio.Event()
    highs: list[str] = []

    async def flood() -> None:
        while not stop.is_set():
            h = job("high", seconds=0.02, artifact=False)
            highs.append(h.job_id)
            await bus.submit(h)
            await asyncio.sleep(0.005)

    for _ in range(30):
        h = job("high", seconds=0.02, artifact=False)
        highs.append(h.job_id)
        await bus.submit(h)
    for lo in lows:
        await bus.submit(lo)
    flooder = asyncio.create_task(flood())
    async with InProcessWorker(bus, env, concurrency=1, starvation_limit=5):
        for lo in lows:
            await wait_for_event(bus, lo.job_id, "job.completed", 60)
        stop.set()
        await flooder
    started = [e.subject for e in await events_of(bus) if e.type == "job.started"]
    positions = [started.index(lo.job_id) for lo in lows]
    # each low job waits at most K=5 high jobs after the previous one
    assert positions[0] <= 5
    assert all(b - a <= 6 for a, b in itertools.pairwise(positions))
    assert len(set(highs) - set(started)) > 0  # high work was still waiting: a real flood


async def test_cancel_running_job_kills_process_tree(bus, env):  # type: ignore[no-untyped-def]
    j = job(spawn_tree=True)
    async with InProcessWorker(bus, env):
        await bus.submit(j)
        deadline = time.monotonic() + 20
        while not (env["runs"] / f"{j.job_id}.tree").exists():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert _sleepers(j.job_id) >= 2
        assert await LocalStore(env["store"]).head(f"jobs/{j.job_id}/partial.bin") is not None
        t0 = time.monotonic()
        await bus.request_cancel(j.job_id, j.run)
        evs = await wait_for_event(bus, j.job_id, "job.cancelled", 5)
        assert time.monotonic() - t0 < 5
    assert _sleepers(j.job_id) == 0
    assert "job.completed" not in {e.type for e in evs}
    assert await LocalStore(env["store"]).head(f"jobs/{j.job_id}/partial.bin") is None


async def test_cancel_before_start_never_runs(bus, env):  # type: ignore[no-untyped-def]
    j = job(seconds=0.1)
    await bus.submit(j)
    await bus.request_cancel(j.job_id, j.run)
    async with InProcessWorker(bus, env):
        await wait_for_event(bus, j.job_id, "job.cancelled")
    assert runs(env["runs"], j.job_id) == []


async def test_native_abort_is_a_failed_attempt_and_worker_lives(bus, env):  # type: ignore[no-untyped-def]
    bad = job(abort=True)
    good = job(seconds=0.1)
    async with InProcessWorker(bus, env, concurrency=1, idle_poll_s=0.05):
        await bus.submit(bad)
        evs = await wait_for_event(bus, bad.job_id, "job.retrying")
        await bus.submit(good)
        await wait_for_event(bus, good.job_id, "job.completed")
    retry = next(e for e in evs if e.type == "job.retrying")
    assert retry.data["error"]["code"] == "native_crash"
    assert "SIGABRT" in retry.data["error"]["message"]


def _sleepers(job_id: str) -> int:
    """Live ``sleep`` processes the job's handler started (its unique duration)."""
    out = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True).stdout
    want = f"sleep {sleep_token(job_id)}"
    return sum(
        1
        for line in out.splitlines()
        if line.split(None, 1)[-1].strip() == want and not line.startswith("Z")
    )


async def test_kill_9_mid_job_redelivers_and_completes_once(bus, env, nats_server):  # type: ignore[no-untyped-def]
    w1 = spawn_worker(nats_server.url, env["store"], env["runs"], ack_wait=1.0)
    j = job(seconds=2.0)
    try:
        await bus.submit(j)
        await wait_until_running(env, j)
        os.kill(w1.pid, signal.SIGKILL)
        w1.wait()
        w2 = spawn_worker(nats_server.url, env["store"], env["runs"], ack_wait=1.0)
        try:
            await wait_for_event(bus, j.job_id, "job.completed", 30)
            await asyncio.sleep(1.5)
        finally:
            w2.terminate()
            w2.wait(30)
    finally:
        if w1.poll() is None:
            w1.kill()
    assert runs(env["runs"], j.job_id) == [1, 2]
    assert Counter(e.type for e in await events_of(bus, j.job_id))["job.completed"] == 1
    files = [p for p in (env["store"] / "objects" / "jobs" / j.job_id).rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["out.txt"]


async def test_sigterm_lets_running_job_finish_within_grace(bus, env, nats_server):  # type: ignore[no-untyped-def]
    w = spawn_worker(nats_server.url, env["store"], env["runs"], ack_wait=1.0, grace=10)
    j = job(seconds=2.0)
    await bus.submit(j)
    await wait_until_running(env, j)
    w.send_signal(signal.SIGTERM)
    assert w.wait(30) == 0
    evs = await wait_for_event(bus, j.job_id, "job.completed", 5)
    assert runs(env["runs"], j.job_id) == [1]
    assert [e.type for e in evs].count("job.completed") == 1


async def test_sigterm_past_grace_hands_job_back_never_lost(bus, env, nats_server):  # type: ignore[no-untyped-def]
    # ack_wait 10 s: a hand-back that did not reach the server would show as a 10 s wait
    await bus.ensure_topology(sleep_registry(), ack_wait_s=10.0)
    w = spawn_worker(nats_server.url, env["store"], env["runs"], ack_wait=10.0, grace=0.5)
    j = job(seconds=4.0)
    await bus.submit(j)
    await wait_until_running(env, j)
    w.send_signal(signal.SIGTERM)
    assert w.wait(30) == 0
    evs = await events_of(bus, j.job_id)
    assert "job.completed" not in {e.type for e in evs}
    assert evs[-1].type == "job.retrying"
    assert evs[-1].data["error"]["code"] == "worker_shutdown"
    t0 = time.monotonic()
    async with InProcessWorker(bus, env, ack_wait_s=10.0):
        await wait_for_event(bus, j.job_id, "job.completed", 30)
    assert time.monotonic() - t0 < 8  # picked up at once (4 s of work), not after ack_wait
    assert runs(env["runs"], j.job_id) == [1, 2]


async def test_a_hand_back_survives_a_server_restart_right_after(bus, env, nats_server):  # type: ignore[no-untyped-def]
    """`arforge down` stops the worker (hand-back) and then NATS: after the restart the job
    must come back at once, not after ack_wait from its first delivery."""
    await bus.ensure_topology(sleep_registry(), ack_wait_s=15.0)
    w = spawn_worker(nats_server.url, env["store"], env["runs"], ack_wait=15.0, grace=0.3)
    j = job(seconds=3.0)
    await bus.submit(j)
    await wait_until_running(env, j)
    w.send_signal(signal.SIGTERM)
    assert w.wait(30) == 0
    await bus.close()
    nats_server.restart()
    b = await connect(nats_server.url, name="test-after-restart")
    try:
        t0 = time.monotonic()
        async with InProcessWorker(b, env, ack_wait_s=15.0):
            await wait_for_event(b, j.job_id, "job.completed", 30)
        assert time.monotonic() - t0 < 10  # 3 s of work; ack_wait would make it >= 15 s
        assert len(runs(env["runs"], j.job_id)) == 2
    finally:
        await b.close()


async def test_nats_restart_mid_run_jobs_complete(nats_server, env):  # type: ignore[no-untyped-def]
    bus = await connect(nats_server.url, name="test")
    await bus.ensure_topology(sleep_registry(), ack_wait_s=2.0)
    running = job(seconds=3.0)
    queued = [job(seconds=0.2) for _ in range(3)]
    try:
        async with InProcessWorker(bus, env, concurrency=1, ack_wait_s=2.0):
            await bus.submit(running)
            for q in queued:
                await bus.submit(q)
            await wait_until_running(env, running)
            await asyncio.to_thread(nats_server.restart)
            for j in [running, *queued]:
                await wait_for_event(bus, j.job_id, "job.completed", 60)
        for j in [running, *queued]:
            assert Counter(e.type for e in await events_of(bus, j.job_id))["job.completed"] == 1
    finally:
        await bus.close()


async def test_never_more_jobs_in_flight_than_slots(bus, env):  # type: ignore[no-untyped-def]
    """Slots freed together are refilled by one pull, never beyond the free count."""
    jobs = [job(seconds=0.2, artifact=False) for _ in range(15)]
    for j in jobs:
        await bus.submit(j)
    async with InProcessWorker(bus, env, concurrency=3):
        for j in jobs:
            await wait_for_event(bus, j.job_id, "job.completed", 60)
    evs = await events_of(bus)
    start = {e.subject: e.time for e in evs if e.type == "job.started"}
    end = {e.subject: e.time for e in evs if e.type == "job.completed"}
    assert set(start) == set(end) == {j.job_id for j in jobs}
    assert all(runs(env["runs"], j.job_id) == [1] for j in jobs)
    edges = sorted([(t, 1) for t in start.values()] + [(t, -1) for t in end.values()])
    in_flight = list(itertools.accumulate(d for _, d in edges))
    assert max(in_flight) == 3  # every slot used, none over-committed


async def test_cancel_while_queued_behind_a_busy_worker_never_runs(bus, env):  # type: ignore[no-untyped-def]
    """A cancel seen live by a running worker stops a job it has not pulled yet."""
    busy, queued = job(seconds=1.0, artifact=False), job(seconds=0.1, artifact=False)
    async with InProcessWorker(bus, env, concurrency=1):
        await bus.submit(busy)
        await wait_for_event(bus, busy.job_id, "job.started")
        await bus.submit(queued)
        await bus.request_cancel(queued.job_id, queued.run)
        evs = await wait_for_event(bus, queued.job_id, "job.cancelled")
    assert [e.type for e in evs] == ["job.cancelled"]
    assert runs(env["runs"], queued.job_id) == []
    assert runs(env["runs"], busy.job_id) == [1]


async def test_retry_after_cancel_runs_only_the_new_run(bus, env):  # type: ignore[no-untyped-def]
    """Cancel while queued, then retry: run 1's message is still in JOBS and is dropped;
    only run 2 executes (the API keeps run 1 cancelled and publishes run 2)."""
    first = job(seconds=0.1, artifact=False)
    await bus.submit(first)
    await bus.request_cancel(first.job_id, 1)
    second = first.model_copy(update={"run": 2})
    await bus.submit(second)
    async with InProcessWorker(bus, env, concurrency=1):
        evs = await wait_for_event(bus, first.job_id, "job.completed")
    assert runs(env["runs"], first.job_id) == [1]  # one execution: run 2's first attempt
    by_run = {(e.data["run"], e.type) for e in evs}
    assert (1, "job.cancelled") in by_run and (1, "job.started") not in by_run
    assert {(2, "job.started"), (2, "job.completed")} <= by_run


async def test_cancel_seen_live_stops_only_runs_up_to_the_cancelled_one(bus, env):  # type: ignore[no-untyped-def]
    running = job(run=2, seconds=3.0, artifact=False)
    async with InProcessWorker(bus, env, concurrency=1):
        await bus.submit(running)
        await wait_for_event(bus, running.job_id, "job.started")
        await bus.request_cancel(running.job_id, 1)  # an older run: not this one
        evs = await wait_for_event(bus, running.job_id, "job.completed", 30)
    assert "job.cancelled" not in {e.type for e in evs}


async def test_missing_input_object_fails_at_once_with_a_code(bus, env):  # type: ignore[no-untyped-def]
    """An input deleted from storage after submit: job.failed input_missing, no retries."""
    from arforge.shared.contracts import InputRef
    from arforge.shared.errors import JobFailed
    from arforge.shared.runtime import JobContext

    j = job()
    ref = InputRef(
        upload_id=str(uuid.uuid4()),
        key="uploads/gone/source.mp4",
        kind="video",
        content_type="video/mp4",
    )
    ctx = JobContext(
        job=j.model_copy(update={"inputs": [ref]}),
        spec=sleep_registry()["sleep"],
        attempt=1,
        workdir=env["work"] / "ctx",
        store=LocalStore(env["store"]),
        progress_sink=lambda f, s: None,
    )
    with pytest.raises(JobFailed) as e:
        await ctx.fetch_inputs()
    assert e.value.code == "input_missing" and ref.upload_id in e.value.message


async def test_worker_exits_on_sigterm_when_the_server_is_already_gone(bus, env, nats_server):  # type: ignore[no-untyped-def]
    """`arforge up` killed with SIGKILL: its children get their stop signal at once, the
    NATS server goes away with them; the worker must still exit, not reconnect forever."""
    await bus.ensure_topology(sleep_registry(), ack_wait_s=10.0)
    w = spawn_worker(nats_server.url, env["store"], env["runs"], ack_wait=10.0, grace=0.5)
    j = job(seconds=30.0)
    await bus.submit(j)
    await wait_until_running(env, j)
    nats_server.stop()
    t0 = time.monotonic()
    w.send_signal(signal.SIGTERM)
    try:
        w.wait(40)
    except subprocess.TimeoutExpired:
        w.kill()
        raise AssertionError("the worker did not exit after SIGTERM with the server gone") from None
    assert time.monotonic() - t0 < 30
    nats_server.start()
