"""The webhook dispatcher: EVENTS -> recorded messages -> scheduled, signed attempts.

Two loops per process:
* the event consumer (durable ``webhooks`` on EVENTS, shared by every dispatcher
  process): maps each event to its public type, finds the tenant's matching enabled
  subscriptions, and records one message per (event, subscription) in PostgreSQL
  (idempotent). The NATS message is acked once the rows are written, so a slow
  endpoint never holds the stream.
* the scheduler: claims due messages from PostgreSQL (``FOR UPDATE SKIP LOCKED`` plus a
  lease, see ``store``) up to ``concurrency`` attempts in flight overall and
  ``per_endpoint_concurrency`` per subscription, and runs each attempt as its own task.
  A failed attempt is rescheduled on the retry schedule; 410 disables the subscription;
  a long run of failures auto-disables it and emits ``webhook.subscription_disabled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from pydantic import ValidationError

from arforge.shared.contracts.events import Event, event_id

from . import store
from .client import DeliveryClient
from .public import (
    TEST,
    encode_body,
    matches,
    message_id,
    public_payload,
    public_type,
    tenant_of,
)
from .settings import WebhookSettings
from .signing import webhook_headers

log = structlog.get_logger("arforge.webhooks")

DURABLE = "webhooks"
DISABLED_EVENT = "webhook.subscription_disabled"
# An event older than a subscription (minus this slack for clock skew) is not sent to it,
# so a new subscription does not receive the stream's history.
CREATED_SLACK = timedelta(seconds=60)
READY_FACTOR = 2  # claimed-but-waiting messages per unit of concurrency
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Dispatcher:
    """One dispatcher process's state. ``bus`` may be None (no consumer, no emitted events).

    ``pool``: asyncpg pool on the ARForge database (migrations applied).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: WebhookSettings,
        *,
        bus: Any = None,
        client: DeliveryClient | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.bus = bus
        self.schedule = settings.schedule()
        self.client = client or DeliveryClient(
            allow_private=settings.allow_private_targets,
            timeout_s=settings.attempt_timeout_s,
            excerpt_bytes=settings.response_excerpt_bytes,
            user_agent=settings.user_agent,
            limit=settings.concurrency,
        )
        self._in_flight = 0
        # Claimed messages (waiting or in flight) per subscription: at most
        # (1 + READY_FACTOR) * per_endpoint_concurrency; in flight: per_endpoint_concurrency.
        self._per_sub: dict[str, int] = defaultdict(int)
        self._running: dict[str, int] = defaultdict(int)
        # waiting claimed messages per subscription, served round-robin
        self._ready: dict[str, deque[store.Claimed]] = {}
        self._n_ready = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # finished attempts waiting to be written in one statement by the writer task
        self._results: list[tuple[store.Claimed, store.AttemptRecord, asyncio.Future[bool]]] = []
        self._results_ready = asyncio.Event()
        self.sent = 0  # attempts made by this process (for logs and the benchmark)

    # --- events -> messages -----------------------------------------------------------
    async def handle_event(self, event: Event) -> int:
        """Record one message per matching subscription; returns how many were new."""
        ptype = public_type(event)
        if ptype is None or ptype == TEST:
            return 0
        tenant = tenant_of(event)
        if tenant is None:
            log.warning("event without tenant_id ignored", event_id=event.id, type=event.type)
            return 0
        event_time = event.time if event.time.tzinfo else event.time.replace(tzinfo=UTC)
        subs = await store.subscriptions_for(self.pool, tenant)
        targets = [
            s
            for s in subs
            if matches(s.event_types, ptype) and event_time >= s.created_at - CREATED_SLACK
        ]
        if not targets:
            return 0
        body = encode_body(public_payload(event, ptype))
        msgs = [
            store.NewMessage(
                id=message_id(event.id, s.id),
                event_id=event.id,
                subscription_id=s.id,
                tenant_id=tenant,
                event_type=ptype,
                body=body,
                max_attempts=self.settings.max_attempts,
            )
            for s in targets
        ]
        n = await store.insert_messages(self.pool, msgs)
        if n:
            self._wake.set()
        return n

    async def on_message(self, msg: Any) -> None:
        """Bus handler: returning acks the NATS message, raising naks it."""
        try:
            event = Event.model_validate_json(msg.data)
        except ValidationError as exc:
            log.warning("malformed event dropped", subject=msg.subject, error=str(exc)[:300])
            return
        await self.handle_event(event)

    # --- scheduling -------------------------------------------------------------------
    def wake(self) -> None:
        """Look for due deliveries now (e.g. after the API recorded a test message)."""
        self._wake.set()

    def _wake_at(self, delay_s: float) -> None:
        asyncio.get_running_loop().call_later(max(0.0, delay_s), self._wake.set)

    async def run_scheduler(self, stop: asyncio.Event) -> None:
        """Claim and start due deliveries until ``stop`` is set, then let the attempts in
        flight finish (each bounded by the attempt timeout) and write their results."""
        writer = asyncio.create_task(self._write_results())
        try:
            await self._schedule(stop)
        finally:
            unstarted = [c for q in self._ready.values() for c in q]
            self._ready, self._n_ready = {}, 0
            with contextlib.suppress(*_DB_ERRORS):
                await store.release_claims(self.pool, unstarted)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=self.settings.attempt_timeout_s + 5)
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=5)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _schedule(self, stop: asyncio.Event) -> None:
        s = self.settings
        # Claimed messages are started at once while slots are free and otherwise wait in
        # ready queues (at most READY_FACTOR * concurrency overall and READY_FACTOR *
        # per_endpoint_concurrency per subscription), so a slot freed by a finished attempt
        # is refilled without a database round trip. A claim runs when at least a quarter
        # of the concurrency is free, not for every finished attempt. A waiting message
        # waits about READY_FACTOR attempt timeouts at most; the lease covers that.
        room_max = (1 + READY_FACTOR) * s.concurrency
        min_batch = max(1, min(s.concurrency // 4, 64))
        while not stop.is_set():
            room = room_max - self._in_flight - self._n_ready
            self._wake.clear()
            if room >= min_batch or (room > 0 and not self._in_flight):
                want = min(room, 1000)
                try:
                    claimed = await store.claim_due(
                        self.pool,
                        limit=want,
                        lease_s=s.lease_s,
                        per_endpoint=(1 + READY_FACTOR) * s.per_endpoint_concurrency,
                        busy=dict(self._per_sub),
                    )
                except _DB_ERRORS as exc:
                    log.warning("claiming deliveries failed", error=str(exc))
                    claimed = []
                for c in claimed:
                    self._per_sub[c.subscription_id] += 1
                    self._ready.setdefault(c.subscription_id, deque()).append(c)
                self._n_ready += len(claimed)
                self._start_ready()
                if len(claimed) == want:
                    continue  # more may be due: claim again at once
            await self._sleep(stop, s.poll_interval_s)

    async def _sleep(self, stop: asyncio.Event, timeout: float) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            stopper.cancel()

    async def _write_results(self) -> None:
        """Write finished attempts in batches (one statement per batch, see store)."""
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            while self._results:
                batch, self._results = self._results[:500], self._results[500:]
                try:
                    applied = await store.record_attempts(
                        self.pool, [(c, rec) for c, rec, _ in batch]
                    )
                except _DB_ERRORS as exc:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for c, _, fut in batch:
                    if not fut.done():
                        fut.set_result(c.id in applied)

    async def _record(self, c: store.Claimed, rec: store.AttemptRecord) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._results.append((c, rec, fut))
        self._results_ready.set()
        return await fut

    def _start_ready(self) -> None:
        """Start waiting messages while global and per-endpoint slots are free,
        taking one subscription at a time in turn (round-robin)."""
        cap = self.settings.per_endpoint_concurrency
        progress = True
        while progress and self._n_ready and self._in_flight < self.settings.concurrency:
            progress = False
            for sid in list(self._ready):
                if self._in_flight >= self.settings.concurrency:
                    break
                if self._running[sid] >= cap:
                    continue
                queue = self._ready.pop(sid)
                c = queue.popleft()
                if queue:
                    self._ready[sid] = queue  # back of the line
                self._n_ready -= 1
                self._in_flight += 1
                self._running[sid] += 1
                task = asyncio.create_task(self._deliver(c))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                progress = True

    async def _deliver(self, c: store.Claimed) -> None:
        released = False

        def release() -> None:
            # Frees the HTTP slot once the attempt is over; the message stays leased while
            # its result is written, so no other claim can pick it up meanwhile.
            nonlocal released
            if released:
                return
            released = True
            self._in_flight -= 1
            sid = c.subscription_id
            for counts in (self._per_sub, self._running):
                n = counts[sid] - 1
                if n <= 0:
                    counts.pop(sid, None)
                else:
                    counts[sid] = n
            self._start_ready()
            self._wake.set()

        try:
            await self.deliver(c, on_attempt_done=release)
        except Exception:
            log.exception("delivery crashed; the lease will expire and it is retried", id=c.id)
        finally:
            release()

    async def deliver(
        self, c: store.Claimed, on_attempt_done: Callable[[], None] | None = None
    ) -> None:
        """Make one attempt for a claimed message and record it.

        ``on_attempt_done`` is called when the HTTP attempt is over, before recording.
        """
        if not c.enabled:
            await store.finish_without_attempt(self.pool, c, "failed", "subscription_disabled")
            return
        attempt = c.attempts + 1
        started_at = datetime.now(UTC)
        headers = webhook_headers(c.id, int(time.time()), c.body, c.secrets)
        outcome = await self.client.attempt(c.url, c.body, headers)
        self.sent += 1
        if on_attempt_done is not None:
            on_attempt_done()
        next_at: datetime | None = None
        if outcome.ok:
            status, last_error = "succeeded", None
        else:
            last_error = outcome.error_class or "failed"
            if outcome.status_code is not None and outcome.error_class == "http_status":
                last_error = f"http_{outcome.status_code}"
            if outcome.gone:
                status = "failed"
            elif self.schedule.has_next(attempt, c.max_attempts):
                status = "pending"
                delay = self.schedule.delay_after(attempt, outcome.retry_after_s)
                next_at = datetime.now(UTC) + timedelta(seconds=delay)
            else:
                status = "failed"
        rec = store.AttemptRecord(
            attempt=attempt,
            started_at=started_at,
            status_code=outcome.status_code,
            error_class=outcome.error_class,
            latency_ms=outcome.latency_ms,
            excerpt=outcome.excerpt,
            succeeded=outcome.ok,
            new_status=status,
            next_attempt_at=next_at,
            last_error=last_error,
        )
        if not await self._record(c, rec):
            log.warning("claim lost before the attempt was recorded", id=c.id, attempt=attempt)
            return
        if next_at is not None:
            self._wake_at((next_at - datetime.now(UTC)).total_seconds())
        if outcome.ok:
            return
        log.info(
            "delivery attempt failed",
            id=c.id,
            attempt=attempt,
            status_code=outcome.status_code,
            error=outcome.error_class,
            detail=outcome.detail,
        )
        if outcome.gone:
            await self.disable(c.subscription_id, "gone")
            return
        run = await store.count_failure(self.pool, c.subscription_id, started_at)
        if run is None:
            return
        failures, since, enabled = run
        s = self.settings
        if (
            enabled
            and failures >= s.disable_after_failures
            and (datetime.now(UTC) - since).total_seconds() >= s.disable_after_s
        ):
            await self.disable(c.subscription_id, "consecutive_failures")

    async def disable(self, subscription_id: str, reason: str) -> bool:
        """Disable a subscription and emit ``webhook.subscription_disabled`` once."""
        row = await store.disable_subscription(self.pool, subscription_id, reason)
        if row is None:
            return False
        log.warning("subscription disabled", subscription_id=subscription_id, reason=reason)
        if self.bus is not None:
            event = Event(
                id=event_id(DISABLED_EVENT, subscription_id, row["disabled_at"].isoformat()),
                type=DISABLED_EVENT,
                time=datetime.now(UTC),
                source="arforge.webhooks",
                subject=subscription_id,
                data={
                    "tenant_id": str(row["tenant_id"]),
                    "subscription_id": subscription_id,
                    "url": row["url"],
                    "reason": reason,
                    "consecutive_failures": row["consecutive_failures"],
                    "failing_since": row["failing_since"].isoformat()
                    if row["failing_since"]
                    else None,
                },
            )
            try:
                await self.bus.emit(event)
            except Exception as exc:
                log.warning("could not emit subscription_disabled", error=str(exc))
        return True

    # --- lifecycle --------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run the consumer (if a bus is set) and the scheduler until ``stop``; in-flight
        attempts finish (bounded by the attempt timeout) before the client closes."""
        loops = [asyncio.create_task(self.run_scheduler(stop))]
        if self.bus is not None:
            loops.append(
                asyncio.create_task(
                    self.bus.consume(
                        stream="EVENTS",
                        durable=DURABLE,
                        filter_subject="events.>",
                        handler=self.on_message,
                        stop=stop,
                        batch=self.settings.consumer_batch,
                    )
                )
            )
        try:
            await asyncio.gather(*loops)
        finally:
            for t in loops:
                t.cancel()
            with contextlib.suppress(Exception):
                await self.client.close()
