"""The tracker process: EVENTS -> ``jobs`` / ``job_events``; MAX_DELIVERIES -> DLQ.

Two durable pull consumers run side by side: ``tracker`` on ``events.job.>`` and
``tracker-advisories`` on the ADVISORIES stream. Several tracker processes may share them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from arforge.shared.contracts import Event, Registry
from arforge.shared.settings import Settings

from ..db import create_pool, migrate
from .advisories import handle_max_deliveries
from .store import record_event, record_events
from .sweep import sweep_dead_jobs

log = logging.getLogger("arforge.api.tracker")

EVENTS_DURABLE = "tracker"
ADVISORIES_DURABLE = "tracker-advisories"
EVENTS_FILTER = "events.job.>"
SWEEP_INTERVAL_S = 60.0
BATCH_ATTEMPTS = 3  # writes of one batch before it is handed over message by message


async def handle_event_message(pool: Any, data: bytes) -> None:
    """Parse one EVENTS message and record it; malformed messages are logged and dropped."""
    try:
        event = Event.model_validate_json(data)
    except ValueError:
        log.error("malformed event dropped: %r", data[:200])
        return
    if not event.type.startswith("job."):
        return
    async with pool.acquire() as conn:
        await record_event(conn, event)


async def handle_event_batch(pool: Any, messages: list[Any]) -> None:
    """Record a fetched batch of EVENTS messages in ONE transaction with a constant number
    of statements (:func:`record_events`); malformed messages are logged and dropped.

    Raises when the batch cannot be written (nothing is then written); the bus then hands
    the messages one by one to :func:`handle_event_message`.
    """
    events = []
    for msg in messages:
        try:
            event = Event.model_validate_json(msg.data)
        except ValueError:
            log.error("malformed event dropped: %r", msg.data[:200])
            continue
        if event.type.startswith("job."):
            events.append(event)
    if not events:
        return
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            async with pool.acquire() as conn:
                await record_events(conn, events)
            return
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as e:
            # another transaction locked rows in a conflicting order: nothing was written
            if attempt == BATCH_ATTEMPTS:
                raise
            log.warning("event batch rolled back (%s); writing it again", type(e).__name__)


async def run_tracker(settings: Settings, stop: asyncio.Event, *, ready: Any = None) -> None:
    """Migrate, connect, and consume until ``stop`` is set.

    ``ready`` (an ``asyncio.Event``, optional) is set once both consumers are subscribing.
    """
    from arforge.shared.bus import ADVISORIES, EVENTS, connect
    from arforge.shared.bus.topology import MAX_DELIVERIES_ADVISORY

    registry = Registry().with_overrides(settings.policies)
    await migrate(settings.database_url)
    pool = await create_pool(settings.database_url, max_size=4)
    # NATS may come up after us (it is retried forever); a stop meanwhile ends the wait.
    connecting = asyncio.create_task(connect(settings.nats_url, name="arforge-tracker"))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({connecting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not connecting.done():
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        await pool.close()
        return
    try:
        bus = connecting.result()
    except BaseException:
        await pool.close()
        raise
    try:
        await bus.ensure_topology(registry)

        async def on_event(msg: Any) -> None:
            await handle_event_message(pool, msg.data)

        async def on_batch(msgs: list[Any]) -> None:
            await handle_event_batch(pool, msgs)

        async def on_advisory(msg: Any) -> None:
            outcome = await handle_max_deliveries(bus, pool, msg.data)
            log.info("max-deliveries advisory handled: %s", outcome)

        tasks = [
            asyncio.create_task(
                bus.consume(
                    stream=EVENTS,
                    durable=EVENTS_DURABLE,
                    filter_subject=EVENTS_FILTER,
                    handler=on_event,
                    batch_handler=on_batch,
                    stop=stop,
                    batch=128,
                )
            ),
            asyncio.create_task(
                bus.consume(
                    stream=ADVISORIES,
                    durable=ADVISORIES_DURABLE,
                    filter_subject=MAX_DELIVERIES_ADVISORY,
                    handler=on_advisory,
                    stop=stop,
                    batch=8,
                )
            ),
        ]

        async def sweep_loop() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL_S)
                except TimeoutError:
                    pass
                if stop.is_set():
                    return
                try:
                    await sweep_dead_jobs(bus, pool, list(registry))
                except Exception:
                    log.exception("dead-job sweep failed")

        tasks.append(asyncio.create_task(sweep_loop()))
        if ready is not None:
            ready.set()
        await asyncio.gather(*tasks)
    finally:
        await bus.close()
        await pool.close()
