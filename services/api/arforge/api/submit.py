"""Turning a ``jobs`` row into a JetStream job message (and its ``job.queued`` event).

Submission follows the outbox pattern: the row is stored first (``queued``,
``bus_published_at`` NULL), then published; :func:`publish_and_mark` stamps
``bus_published_at`` on success. A failed or unconfirmed publish is never undone (the
server may have stored the message anyway); :mod:`arforge.api.outbox` publishes such rows
again, and ``Nats-Msg-Id`` = ``<job_id>:<run>`` makes the server drop a copy it already has.
"""

from __future__ import annotations

import logging
from typing import Any

from arforge.shared.contracts import InputRef, JobMessage, JobStatus, job_event

SOURCE = "arforge.api"
log = logging.getLogger("arforge.api.submit")


def job_message(row: Any) -> JobMessage:
    """The :class:`JobMessage` for the row's current run."""
    return JobMessage(
        job_id=str(row["id"]),
        type=row["type"],
        priority=row["priority"],
        tenant_id=str(row["tenant_id"]),
        run=row["run"],
        params=row["params"] or {},
        inputs=[InputRef.model_validate(i) for i in row["inputs"] or []],
        submitted_at=row["updated_at"],
    )


def job_ref(row: Any) -> dict[str, Any]:
    """The fields :func:`job_event` needs."""
    return {
        "job_id": str(row["id"]),
        "type": row["type"],
        "tenant_id": str(row["tenant_id"]),
        "priority": row["priority"],
        "run": row["run"],
    }


async def publish_run(bus: Any, row: Any) -> None:
    """Submit the row's run to JOBS with its ``job.queued`` event (one round trip; both
    deduplicated by id)."""
    queued = job_event(JobStatus.queued, job_ref(row), source=SOURCE, attempt=0)
    await bus.submit(job_message(row), events=[queued])


async def publish_and_mark(conn: Any, bus: Any, row: Any, marks: Any = None) -> bool:
    """Publish the row's run and stamp ``bus_published_at``; ``True`` on success.

    With ``marks`` (:class:`arforge.api.outbox.PublishedMarks`) the stamp is queued and
    written with others in one statement shortly after; without, it is written now.
    A publish error (NATS down, timeout) is logged and returns ``False``: the row stays
    queued and unstamped, and the republisher retries it. Never raises for bus errors.
    """
    from .db import jobs as q

    try:
        await publish_run(bus, row)
    except Exception:
        log.exception(
            "publishing job %s run %s to NATS failed; the republisher will retry it",
            row["id"],
            row["run"],
        )
        return False
    if marks is not None:
        marks.add(row["id"], row["run"])
    else:
        await q.mark_published(conn, row["id"], row["run"])
    return True
