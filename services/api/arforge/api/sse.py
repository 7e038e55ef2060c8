"""Server-Sent Events for one job, read from ``job_events`` (history, then live by polling).

Why poll PostgreSQL rather than subscribe to NATS: the tracker writes every event to
``job_events`` in the order it stored them (``seq``); reading history and live events from
that one table leaves no gap or duplicate at the hand-over, and the API needs no per-client
NATS subscription. The cost is up to ``POLL_S`` of added latency.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from arforge.shared.contracts import TERMINAL

POLL_S = 0.5
KEEPALIVE_S = 15.0
# If the job row is terminal but its terminal event has not been stored after this long
# (e.g. the event stream lost it), the stream ends anyway.
TERMINAL_GRACE_S = 10.0
_TERMINAL_TYPES = {f"job.{s}" for s in TERMINAL}


def format_sse(row: Any) -> str:
    """One SSE message for a ``job_events`` row; ``data`` is the Event envelope as JSON."""
    envelope = {
        "id": row["id"],
        "type": row["type"],
        "time": row["time"].isoformat(),
        "source": row["source"],
        "subject": str(row["job_id"]),
        "data": row["data"],
        "version": "1",
    }
    data = json.dumps(envelope, separators=(",", ":"))
    return f"id: {row['id']}\nevent: {row['type']}\ndata: {data}\n\n"


async def _start_seq(pool: Any, job_id: Any, last_event_id: str | None) -> int:
    if not last_event_id:
        return 0
    seq = await pool.fetchval(
        "SELECT seq FROM job_events WHERE id = $1 AND job_id = $2", last_event_id, job_id
    )
    return int(seq or 0)


async def job_event_stream(
    pool: Any,
    job_id: Any,
    request: Request | None = None,
    *,
    last_event_id: str | None = None,
    poll_s: float = POLL_S,
) -> AsyncIterator[str]:
    """Yield SSE messages for ``job_id`` until the terminal event of its current run.

    After the terminal event one more poll flushes trailing events (``job.dead_lettered``).
    Ends early when the client disconnects.
    """
    after = await _start_seq(pool, job_id, last_event_id)
    idle = 0.0
    terminal_since: float | None = None
    loop = asyncio.get_running_loop()
    yield ": stream open\n\n"
    finishing = False
    while True:
        rows = await pool.fetch(
            "SELECT e.id, e.seq, e.job_id, e.type, e.time, e.source, e.run, e.data"
            " FROM job_events e WHERE e.job_id = $1 AND e.seq > $2 ORDER BY e.seq",
            job_id,
            after,
        )
        job = await pool.fetchrow("SELECT run, status FROM jobs WHERE id = $1", job_id)
        for row in rows:
            after = row["seq"]
            yield format_sse(row)
            if job is not None and row["type"] in _TERMINAL_TYPES and row["run"] == job["run"]:
                finishing = True
        if rows:
            idle = 0.0
        if finishing and not rows:
            return
        if job is None:
            return
        if job["status"] in TERMINAL and not finishing:
            now = loop.time()
            terminal_since = terminal_since or now
            if now - terminal_since > TERMINAL_GRACE_S:
                return
        if request is not None and await request.is_disconnected():
            return
        await asyncio.sleep(poll_s)
        idle += poll_s
        if idle >= KEEPALIVE_S:
            idle = 0.0
            yield ": keep-alive\n\n"
