"""The republisher: publishes queued job runs whose submit to NATS was never confirmed.

Runs as a background task in every API process (started by the app lifespan). Every
``every_s`` seconds it claims up to ``batch`` rows with ``status = 'queued'``,
``bus_published_at IS NULL`` and ``updated_at`` older than ``after_s`` seconds
(``FOR UPDATE SKIP LOCKED``, so concurrent API processes split the rows), publishes each
run again with :func:`arforge.api.submit.publish_run` and stamps ``bus_published_at``.
The server drops a copy it already stored within the JOBS stream's 2-minute duplicate
window (``Nats-Msg-Id`` = ``<job_id>:<run>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .db import jobs as q
from .submit import publish_run

log = logging.getLogger("arforge.api.outbox")

DEFAULT_EVERY_S = 2.0
DEFAULT_AFTER_S = 5.0
DEFAULT_BATCH = 50


async def republish_once(
    pool: Any, bus: Any, *, after_s: float = DEFAULT_AFTER_S, batch: int = DEFAULT_BATCH
) -> int:
    """One pass: republish claimable rows; returns how many were published.

    Stops at the first publish error (the bus is likely down) and keeps the rows already
    stamped; the failed and remaining rows are retried on the next pass.
    """
    done = 0
    async with pool.acquire() as conn, conn.transaction():
        rows = await q.claim_unpublished(conn, older_than_s=after_s, limit=batch)
        for row in rows:
            try:
                await publish_run(bus, row)
            except Exception as exc:
                log.warning("republishing job %s run %s failed: %s", row["id"], row["run"], exc)
                break
            await q.mark_published(conn, row["id"], row["run"])
            done += 1
    if done:
        log.info("republished %d job run(s) whose first publish was not confirmed", done)
    return done


async def run_republisher(
    pool: Any,
    bus: Any,
    stop: asyncio.Event,
    *,
    every_s: float = DEFAULT_EVERY_S,
    after_s: float = DEFAULT_AFTER_S,
) -> None:
    """Call :func:`republish_once` every ``every_s`` seconds until ``stop`` is set.

    Errors of one pass (PostgreSQL unavailable, ...) are logged, never raised.
    """
    while not stop.is_set():
        try:
            await republish_once(pool, bus, after_s=after_s)
        except Exception:
            log.exception("republisher pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
