"""The job runtime: pulls jobs from JetStream lanes, runs handlers, owns ack/nak/term.

Outcomes (see ARCHITECTURE.md, "Job runtime semantics"):

=============================  =====================  ==================================
handler outcome                JetStream              events
=============================  =====================  ==================================
returns a result               ack (after the event)  job.completed
Retry / error, attempts left   nak(delay) (backoff)   job.retrying
same, no attempts left         DLQ publish, term      job.failed + job.dead_lettered
JobFailed(code), bad params    term                   job.failed
cancel requested               kill group, term       job.cancelled (artifacts removed)
timeout                        kill group; retryable  job.retrying / job.failed
worker shutting down           finish in grace or     none
                               nak(0)
=============================  =====================  ==================================

JetStream traps handled here: the consumer has a fixed ``ack_wait`` and no backoff list;
long jobs send ``in_progress()`` heartbeats every ``ack_wait / 4``; the worker never holds
more messages than it has free slots (a prefetched batch would outlive ``ack_wait`` and run
twice): one ``no_wait`` pull request per lane asks for exactly the free slots' worth;
retry delays are computed here and applied with ``nak(delay)``.

Per job on the hot path: one pull request shared by the slots freed together; the
``job.started`` publish is sent without waiting for its acknowledgement (it is in the
connection's buffer before any outcome event, so it lands first, and is settled at the
end), while ``job.completed`` must be stored before the job message is acked; the cancel
check is a lookup in a mirror of the cancel bucket (:mod:`.cancels`). Cancellation is per
run: a retry (``run + 1``) is not affected by the cancel of an earlier run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError

from ..bus import Bus
from ..bus import topology as topo
from ..bus.publisher import PubAck
from ..contracts import JobMessage, JobResult, JobSpec, JobStatus, Registry, job_event
from ..errors import JobFailed, JobTimedOut, Retry
from ..settings import WorkerSettings
from ..storage.base import ObjectStore
from .cancels import CancelMirror
from .context import JobContext
from .lanes import Lane, LaneScheduler
from .workdirs import sweep_orphans

log = structlog.get_logger("arforge.worker")

Handler = Callable[[JobContext, Any], Awaitable[Any]]
PULL_TIMEOUT_S = 2.0
FRESH_NOTIFY_S = 0.05
FRESH_EXPIRES_NS = 50_000_000
TERMINAL_EMIT_DEADLINE_S = 120.0
HANDBACK_DELAY_S = 0.01


@dataclass
class _Running:
    job: JobMessage
    msg: Msg
    task: asyncio.Task  # type: ignore[type-arg]
    stop_reason: str | None = None  # "cancelled" | "shutdown"
    last_beat: float = 0.0  # monotonic time of the delivery or the last in_progress()


class Worker:
    """Serves ``handlers`` (job type -> async handler) with ``settings.concurrency`` slots.

    Construct, then ``await run()`` until :meth:`shutdown` (or SIGTERM/SIGINT with
    :func:`run_worker`). ``registry`` supplies each type's params/result models and
    retry policy.
    """

    def __init__(
        self,
        bus: Bus,
        store: ObjectStore,
        handlers: dict[str, Handler],
        *,
        registry: Registry,
        settings: WorkerSettings,
        name: str | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.handlers = handlers
        self.registry = registry
        self.settings = settings
        self.name = name or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.specs: dict[str, JobSpec] = {t: registry[t] for t in handlers}
        self.scheduler = LaneScheduler(list(handlers), settings.starvation_limit)
        self._free = settings.concurrency  # slots without a job
        self._slot_freed = asyncio.Event()
        self._wake = asyncio.Event()
        self.cancels = CancelMirror()
        self._stopping = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._inboxes: dict[tuple[str, str], Any] = {}
        self._subs: list[Any] = []
        self.jobs_started = 0

    # --- set-up ------------------------------------------------------------------
    async def _setup(self) -> None:
        orphans = await asyncio.to_thread(sweep_orphans, Path(self.settings.workdir))
        if orphans:
            log.info(
                "removed work directories of workers that died",
                count=len(orphans),
                dirs=[d.name for d in orphans[:10]],
            )
        await self.bus.ensure_topology(self.specs.values(), ack_wait_s=self.settings.ack_wait_s)
        nc = self.bus.nc
        for lane in self.scheduler.lanes:
            inbox = nc.new_inbox()
            self._inboxes[lane.key] = await nc.subscribe(inbox)

        async def on_publish(msg: Msg) -> None:  # wake-up only; the job is pulled later
            _, job_type, prio = msg.subject.split(".", 2)
            self.scheduler.notify(job_type, prio)
            self._wake.set()

        async def on_cancel(msg: Msg) -> None:
            job_id = msg.subject.rsplit(".", 1)[-1]
            op = msg.headers.get("KV-Operation") if msg.headers else None
            through = self.cancels.update(job_id, msg.data, op)
            if through:
                self._cancel_running(job_id, through)

        for job_type in self.handlers:
            self._subs.append(await nc.subscribe(f"jobs.{job_type}.*", cb=on_publish))
        # Subscribe first, then read the keys already there: nothing falls in between.
        self._subs.append(await nc.subscribe(f"$KV.{topo.CANCEL_BUCKET}.*", cb=on_cancel))
        await nc.flush()
        self.cancels.load(await self.bus.cancel_requests())

    def _cancel_running(self, job_id: str, through_run: int) -> None:
        """Stop the job's running attempt if its run is ``<= through_run``."""
        running = self._running.get(job_id)
        if running is not None and running.stop_reason is None and running.job.run <= through_run:
            running.stop_reason = "cancelled"
            running.task.cancel()

    # --- fetching ----------------------------------------------------------------
    async def _pull(self, lane: Lane, n: int) -> tuple[list[Msg], bool]:
        """One pull request for up to ``n`` messages on ``lane``.

        Returns ``(messages, drained)``; ``drained`` is true when the server said the lane
        had no more (``404`` / ``408``), so the lane can be skipped until the next
        notification. The request is ``no_wait``: the server answers at once with what
        it has. Right after a publish notification the core message may arrive before
        JetStream has stored the job, so the request then also carries ``expires``
        (``FRESH_EXPIRES_NS``): the server waits that long for a first message instead of
        answering "none".
        """
        sub = self._inboxes[lane.key]
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{topo.JOBS}.{topo.consumer_name(*lane.key)}"
        req: dict[str, Any] = {"batch": n, "no_wait": True}
        if time.monotonic() - lane.notified_at < FRESH_NOTIFY_S:
            req["expires"] = FRESH_EXPIRES_NS
        await self.bus.nc.publish(subject, json.dumps(req).encode(), reply=sub.subject)
        out: list[Msg] = []
        while len(out) < n:
            try:
                msg = await sub.next_msg(timeout=PULL_TIMEOUT_S)
            except nats.errors.TimeoutError:
                return out, False
            status = msg.headers.get("Status") if msg.headers else None
            if status is None:
                out.append(msg)
            elif status in ("404", "408", "409"):
                return out, True
            # 100 = heartbeat: keep reading
        return out, False

    async def _next_messages(self, n: int) -> list[tuple[Lane, Msg]]:
        """Up to ``n`` messages from the lanes in scheduler order; waits while all are empty.

        Returns ``[]`` only when the worker is stopping.
        """
        while not self._stopping.is_set():
            got: list[tuple[Lane, Msg]] = []
            for lane in self.scheduler.order():
                try:
                    msgs, drained = await self._pull(lane, n - len(got))
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                    msgs, drained = [], False
                    await asyncio.sleep(0.2)
                for msg in msgs:
                    self.scheduler.served(lane)
                    got.append((lane, msg))
                if drained or not msgs:
                    self.scheduler.empty(lane)
                if len(got) >= n:
                    break
            if got:
                return got
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.idle_poll_s)
            if not self._wake.is_set():
                self.scheduler.mark_all()  # delayed naks come due without a publish
        return []

    # --- main loop ---------------------------------------------------------------
    async def run(self) -> None:
        """Serve jobs until :meth:`shutdown`; then drain (see ``drain_grace_s``)."""
        await self._setup()
        log.info(
            "worker ready",
            worker=self.name,
            types=list(self.handlers),
            concurrency=self.settings.concurrency,
        )
        tasks: set[asyncio.Task] = set()  # type: ignore[type-arg]
        beats = asyncio.create_task(self._heartbeats())
        try:
            while not self._stopping.is_set():
                if self._free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                for lane, msg in await self._next_messages(self._free):
                    self._free -= 1
                    task = asyncio.create_task(self._run_job(lane, msg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            await self._drain(tasks)
        finally:
            beats.cancel()
            for sub in self._subs + list(self._inboxes.values()):
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _drain(self, tasks: set[asyncio.Task]) -> None:  # type: ignore[type-arg]
        if not tasks:
            return
        log.info("draining", running=len(tasks), grace_s=self.settings.drain_grace_s)
        _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_grace_s)
        for running in list(self._running.values()):
            if running.stop_reason is None:
                running.stop_reason = "shutdown"
                running.task.cancel()
        if pending:
            await asyncio.wait(pending)

    def shutdown(self) -> None:
        """Stop taking jobs; running ones get ``drain_grace_s`` to finish."""
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()

    # --- one job -----------------------------------------------------------------
    async def _run_job(self, lane: Lane, msg: Msg) -> None:
        try:
            await self._run_job_inner(lane, msg)
        except Exception:
            log.exception("runtime error handling a job; handing it back")
            with contextlib.suppress(Exception):
                await msg.nak(delay=5)
        finally:
            self._free += 1
            self._slot_freed.set()

    async def _run_job_inner(self, lane: Lane, msg: Msg) -> None:
        attempt = int(msg.metadata.num_delivered or 1)
        try:
            job = JobMessage.model_validate_json(msg.data)
        except ValidationError as e:
            log.error("malformed job message; terminated", error=str(e)[:500])
            await msg.term()
            return
        spec = self.specs[job.type]
        source = f"arforge.worker.{job.type}"
        jd = job.model_dump(mode="json")
        structlog.contextvars.bind_contextvars(
            job_id=job.job_id, job_type=job.type, attempt=attempt
        )
        try:
            if self.cancels.requested(job.job_id, job.run):
                await self._finish_cancelled(job, jd, source, attempt, msg)
                return
            await self._attempt(job, jd, spec, source, attempt, msg)
        finally:
            structlog.contextvars.unbind_contextvars("job_id", "job_type", "attempt")

    async def _attempt(
        self,
        job: JobMessage,
        jd: dict,
        spec: JobSpec,
        source: str,
        attempt: int,
        msg: Msg,  # type: ignore[type-arg]
    ) -> None:
        workdir = Path(self.settings.workdir) / f"{job.job_id}-{attempt}"
        emitter = _ProgressEmitter(self.bus, jd, source, attempt, self.settings.progress_interval_s)
        ctx = JobContext(
            job=job,
            spec=spec,
            attempt=attempt,
            workdir=workdir,
            store=self.store,
            progress_sink=emitter.report,
        )
        # Published once, not awaited: acknowledged while the handler runs. Every outcome
        # event is published after it on the same connection, so it lands after it.
        started = await self._emit_nowait(
            job_event(JobStatus.started, jd, source=source, attempt=attempt, worker=self.name)
        )
        try:
            await self._run_handler(job, jd, spec, source, attempt, msg, ctx, emitter)
        finally:
            if started is not None:
                await self._settle_started(started)

    async def _run_handler(
        self,
        job: JobMessage,
        jd: dict,  # type: ignore[type-arg]
        spec: JobSpec,
        source: str,
        attempt: int,
        msg: Msg,
        ctx: JobContext,
        emitter: _ProgressEmitter,
    ) -> None:
        """Run the handler with its timeout and turn the outcome into events + ack/nak/term."""
        self.jobs_started += 1
        t0 = time.monotonic()
        task = asyncio.create_task(self._call_handler(ctx, spec, job))
        running = _Running(job, msg, task, last_beat=t0)
        self._running[job.job_id] = running
        try:
            try:
                async with asyncio.timeout(spec.policy.timeout_s):
                    result = await task
            except TimeoutError:
                raise JobTimedOut(spec.policy.timeout_s) from None
        except asyncio.CancelledError:
            if running.stop_reason == "cancelled":
                await self._finish_cancelled(job, jd, source, attempt, msg)
                return
            if running.stop_reason == "shutdown":
                log.info("handing the job back at shutdown")
                # With a delay the server stores the new due time, so the hand-back
                # survives a server restart right after (a stack stopping); a plain nak
                # would wait out ack_wait from the original delivery after a restart.
                await msg.nak(delay=HANDBACK_DELAY_S)
                # Tell trackers the job is waiting again (not stuck at its last progress).
                error = {
                    "code": "worker_shutdown",
                    "message": "the worker stopped; the job went back to the queue",
                }
                await self._emit(
                    job_event(
                        JobStatus.retrying,
                        jd,
                        source=source,
                        attempt=attempt,
                        error=error,
                        delay_s=0.0,
                    ),
                    critical=False,
                )
                return
            raise
        except JobFailed as e:
            await emitter.close()
            await self._emit(
                job_event(
                    JobStatus.failed,
                    jd,
                    source=source,
                    attempt=attempt,
                    error={"code": e.code, "message": e.message, "details": e.details},
                )
            )
            await msg.term()
            log.info("job failed", code=e.code)
            return
        except Exception as e:
            await emitter.close()
            await self._retry_or_dead_letter(job, jd, spec, source, attempt, msg, e)
            return
        finally:
            self._running.pop(job.job_id, None)
            await emitter.close()
            if ctx.workdir_used:
                shutil.rmtree(ctx.workdir, ignore_errors=True)
        elapsed = time.monotonic() - t0
        await self._emit(
            job_event(
                JobStatus.completed,
                jd,
                source=source,
                attempt=attempt,
                result=result,
                duration_s=round(elapsed, 3),
            )
        )
        await msg.ack()
        log.info("job completed", duration_s=round(elapsed, 3))

    async def _call_handler(self, ctx: JobContext, spec: JobSpec, job: JobMessage) -> dict:  # type: ignore[type-arg]
        try:
            params = spec.params.model_validate(job.params)
        except ValidationError as e:
            raise JobFailed(
                "invalid_params",
                "The job parameters are invalid.",
                {"errors": json.loads(e.json())},
            ) from None
        result = await self.handlers[job.type](ctx, params)
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        try:
            validated: JobResult = spec.result.model_validate(result)
        except ValidationError as e:
            raise JobFailed(
                "invalid_result", f"The handler returned an invalid result: {e}"
            ) from None
        return validated.model_dump(mode="json")

    async def _retry_or_dead_letter(
        self,
        job: JobMessage,
        jd: dict,
        spec: JobSpec,
        source: str,
        attempt: int,  # type: ignore[type-arg]
        msg: Msg,
        exc: Exception,
    ) -> None:
        code = getattr(exc, "code", "unexpected_error")
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, Retry):
            log.exception("handler raised", exc_info=exc)
        error = {"code": code, "message": message[:2000]}
        if attempt < spec.policy.max_attempts:
            delay = getattr(exc, "delay_s", None)
            if delay is None:
                delay = spec.policy.delay_for(attempt)
            next_at = datetime.now(UTC) + timedelta(seconds=delay)
            await self._emit(
                job_event(
                    JobStatus.retrying,
                    jd,
                    source=source,
                    attempt=attempt,
                    error=error,
                    delay_s=round(delay, 3),
                    next_retry_at=next_at.isoformat(),
                )
            )
            await msg.nak(delay=delay)
            log.info("attempt failed; retrying", code=code, delay_s=round(delay, 3))
            return
        seq = await self.bus.dead_letter(
            job, reason="attempts_exhausted", attempts=attempt, last_error=f"{code}: {message}"
        )
        await self._emit(
            job_event(
                JobStatus.failed,
                jd,
                source=source,
                attempt=attempt,
                error={
                    "code": "attempts_exhausted",
                    "message": f"Gave up after {attempt} attempts; last error: {message[:500]}",
                    "last_code": code,
                },
            )
        )
        await self._emit(
            job_event(
                JobStatus.dead_lettered,
                jd,
                source=source,
                attempt=attempt,
                reason="attempts_exhausted",
                attempts=attempt,
                last_error=f"{code}: {message}"[:2000],
                dlq_seq=seq,
            )
        )
        await msg.term()
        log.warning("attempts exhausted; dead-lettered", code=code, dlq_seq=seq)

    async def _finish_cancelled(
        self,
        job: JobMessage,
        jd: dict,
        source: str,
        attempt: int,
        msg: Msg,  # type: ignore[type-arg]
    ) -> None:
        removed = await self.store.delete_prefix(f"jobs/{job.job_id}/")
        await self._emit(job_event(JobStatus.cancelled, jd, source=source, attempt=attempt))
        await msg.term()
        running = job.job_id in self._running
        log.info(
            "job cancelled" if running else "message of a cancelled run dropped",
            run=job.run,
            artifacts_removed=removed,
        )

    async def _heartbeats(self) -> None:
        """Keep running jobs' messages ours; re-read the cancel bucket on each beat.

        One loop for all slots: every ``ack_wait / 8`` it sends ``in_progress()`` for each
        job whose last beat is ``ack_wait / 4`` old, so no job goes longer than
        ``3/8 ack_wait`` without one.
        """
        interval = max(self.settings.ack_wait_s / 4, 0.05)
        while True:
            await asyncio.sleep(interval / 2)
            now = time.monotonic()
            for job_id, running in list(self._running.items()):
                if now - running.last_beat < interval:
                    continue
                running.last_beat = now
                with contextlib.suppress(Exception):
                    await running.msg.in_progress()
                with contextlib.suppress(Exception):
                    through = await self.bus.cancelled_through(job_id)
                    if through:
                        self._cancel_running(job_id, through)

    async def _emit_nowait(self, event: Any) -> asyncio.Future[PubAck] | None:
        """Publish a non-critical event once without waiting; its PubAck future or None."""
        try:
            return await self.bus.emit_nowait(event)
        except Exception as e:
            log.warning("could not publish event", event_type=event.type, error=str(e))
            return None

    async def _settle_started(self, ack: asyncio.Future[PubAck]) -> None:
        if not await self.bus.settle(ack):
            log.warning("job.started was not acknowledged; the tracker will see the outcome only")

    async def _emit(self, event: Any, *, critical: bool = True) -> None:
        """Publish an event; critical ones are retried through a NATS outage."""
        deadline = time.monotonic() + (TERMINAL_EMIT_DEADLINE_S if critical else 5.0)
        while True:
            try:
                await self.bus.emit(event)
                return
            except Exception as e:
                if time.monotonic() > deadline:
                    log.error("could not publish event", event_type=event.type, error=str(e))
                    if critical:
                        raise
                    return
                await asyncio.sleep(0.5)


class _ProgressEmitter:
    """Throttles ``job.progress`` events to one per interval (stage changes go at once)."""

    def __init__(self, bus: Bus, jd: dict, source: str, attempt: int, interval: float) -> None:  # type: ignore[type-arg]
        self.bus, self.jd, self.source, self.attempt = bus, jd, source, attempt
        self.interval = interval
        self.last_t = 0.0
        self.last_stage: str | None = None
        self.seq = 0
        self.pending: tuple[float, str] | None = None
        self.task: asyncio.Task | None = None  # type: ignore[type-arg]

    def report(self, fraction: float, stage: str) -> None:
        self.pending = (fraction, stage)
        now = time.monotonic()
        if stage != self.last_stage or now - self.last_t >= self.interval:
            self._flush()
        elif self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(max(self.interval - (time.monotonic() - self.last_t), 0))
        self._flush()

    def _flush(self) -> None:
        if self.pending is None:
            return
        fraction, stage = self.pending
        self.pending = None
        self.last_t, self.last_stage = time.monotonic(), stage
        self.seq += 1
        ev = job_event(
            JobStatus.progress,
            self.jd,
            source=self.source,
            attempt=self.attempt,
            seq=self.seq,
            fraction=round(fraction, 4),
            stage=stage,
        )
        asyncio.get_running_loop().create_task(self._send(ev))

    async def _send(self, ev: Any) -> None:
        with contextlib.suppress(Exception):
            await self.bus.emit(ev)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.pending = None


def run_worker(handlers: dict[str, Handler], *, service: str | None = None) -> None:
    """Blocking entry point for ``python -m arforge.<service>``: connect, serve, drain.

    SIGTERM / SIGINT start a graceful drain: no new jobs, running ones get
    ``ARFORGE_WORKER__DRAIN_GRACE_S`` seconds, then are handed back with ``nak``.
    """
    from ..bus import connect
    from ..contracts import default_registry
    from ..logging import configure_logging
    from ..settings import get_settings
    from ..startup import run_service
    from ..storage.factory import make_store

    settings = get_settings()
    name = service or "+".join(handlers)
    configure_logging(f"worker.{name}", level=settings.log_level, json=settings.log_json)

    async def main() -> None:
        bus = await connect(settings.nats_url, name=f"arforge-worker-{name}")
        store = make_store(settings)
        worker = Worker(bus, store, handlers, registry=default_registry(), settings=settings.worker)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.shutdown)
        try:
            await worker.run()
        finally:
            await bus.close()
            await store.close()

    run_service(
        f"worker.{name}", main, database_url=settings.database_url, nats_url=settings.nats_url
    )
