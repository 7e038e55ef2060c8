"""The job outbox: confirmed publishes stamped in batches, unconfirmed ones republished.

:class:`PublishedMarks` collects the runs whose publish the server acknowledged and stamps
``bus_published_at`` for all of them in one UPDATE every ``every_s`` (instead of an UPDATE
and a commit per request). A batch that is never written (crash, PostgreSQL error) only
makes the republisher publish those runs again, and the server drops the copies.

The republisher publishes queued job runs whose submit to NATS was never confirmed.

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
import uuid
from typing import Any

from .db import jobs as q
from .submit import publish_run

log = logging.getLogger("arforge.api.outbox")

MARK_EVERY_S = 0.05
MARK_MAX_BATCH = 500
DEFAULT_EVERY_S = 2.0
DEFAULT_AFTER_S = 5.0
DEFAULT_BATCH = 50


class PublishedMarks:
    """Runs confirmed on the bus, waiting to be stamped ``bus_published_at``.

    :meth:`add` is synchronous and cheap; :meth:`run` flushes every ``every_s`` seconds
    (sooner once ``max_batch`` wait) until ``stop`` is set, then once more.
    """

    def __init__(
        self, pool: Any, *, every_s: float = MARK_EVERY_S, max_batch: int = MARK_MAX_BATCH
    ) -> None:
        self.pool = pool
        self.every_s = every_s
        self.max_batch = max_batch
        self._pending: dict[tuple[uuid.UUID, int], None] = {}
        self._full = asyncio.Event()

    def add(self, job_id: Any, run: int) -> None:
        """Queue ``(job_id, run)`` for stamping."""
        jid = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
        self._pending[(jid, int(run))] = None
        if len(self._pending) >= self.max_batch:
            self._full.set()

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Stamp everything queued now in one statement; rows stamped. On error the runs
        are dropped (logged): the republisher covers them."""
        if not self._pending:
            return 0
        runs, self._pending = list(self._pending), {}
        self._full.clear()
        try:
            async with self.pool.acquire() as conn:
                return await q.mark_published_many(conn, runs)
        except Exception:
            log.exception("stamping %d published run(s) failed; republisher covers them", len(runs))
            return 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.every_s)
            await self.flush()
        await self.flush()


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
