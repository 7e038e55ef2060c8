"""Crash-loop safety net: JetStream MAX_DELIVERIES advisories for the JOBS stream.

When every delivery of a job message ended without an ack (the worker was OOM-killed or
crashed each time), the server gives up and publishes an advisory naming the message's
stream sequence. The tracker then moves the job to the DLQ with reason ``crash_loop``,
emits ``job.failed`` (code ``crash_loop``) and ``job.dead_lettered``, and deletes the
message from JOBS. Each step is idempotent (message ids / event ids), and the JOBS message
is deleted last, so a redelivered advisory after a partial run finishes the work.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from nats.js.errors import APIError, NotFoundError

from arforge.shared.contracts import JobMessage, JobStatus, job_event

log = logging.getLogger("arforge.api.tracker.advisories")

SOURCE = "arforge.tracker"
CRASH_LOOP = "crash_loop"


def parse_advisory(data: bytes) -> tuple[str, int, int] | None:
    """``(stream, stream_seq, deliveries)`` from a MAX_DELIVERIES advisory, else ``None``."""
    try:
        adv = json.loads(data)
        return str(adv["stream"]), int(adv["stream_seq"]), int(adv.get("deliveries") or 0)
    except (ValueError, KeyError, TypeError):
        return None


async def handle_max_deliveries(bus: Any, pool: Any, data: bytes) -> str:
    """Dead-letter the job a MAX_DELIVERIES advisory names; returns what was done.

    Results: ``"dead_lettered"``, ``"gone"`` (message already removed), ``"superseded"``
    (the job moved to a newer run or ended; message only deleted), ``"ignored"``.
    """
    parsed = parse_advisory(data)
    if parsed is None:
        log.warning("unparseable advisory ignored: %r", data[:200])
        return "ignored"
    stream, seq, deliveries = parsed
    if stream != "JOBS":
        return "ignored"
    try:
        raw = await bus.js.get_msg(stream, seq)
    except NotFoundError:
        return "gone"
    try:
        job = JobMessage.model_validate_json(raw.data)
    except ValueError:
        log.error("JOBS message %s is not a job message; deleting it", seq)
        await _delete(bus, stream, seq)
        return "ignored"

    row = None
    try:
        row = await pool.fetchrow(
            "SELECT run, status FROM jobs WHERE id = $1", uuid.UUID(job.job_id)
        )
    except ValueError:
        row = None
    if row is not None and (
        row["run"] > job.run or row["status"] in ("completed", "failed", "cancelled")
    ):
        await _delete(bus, stream, seq)
        return "superseded"

    message = (
        f"the worker stopped without finishing {deliveries} deliveries in a row "
        "(killed, out of memory or crashed)"
    )
    ref = {
        "job_id": job.job_id,
        "type": job.type,
        "tenant_id": job.tenant_id,
        "priority": job.priority.value,
        "run": job.run,
    }
    await bus.dead_letter(job, reason=CRASH_LOOP, attempts=deliveries, last_error=message)
    await bus.emit(
        job_event(
            JobStatus.failed,
            ref,
            source=SOURCE,
            attempt=deliveries,
            error={"code": CRASH_LOOP, "message": message},
        )
    )
    await bus.emit(
        job_event(
            JobStatus.dead_lettered,
            ref,
            source=SOURCE,
            attempt=deliveries,
            reason=CRASH_LOOP,
            attempts=deliveries,
            last_error=message,
        )
    )
    await _delete(bus, stream, seq)
    return "dead_lettered"


async def _delete(bus: Any, stream: str, seq: int) -> None:
    try:
        await bus.js.delete_msg(stream, seq)
    except NotFoundError:
        pass
    except APIError as e:  # 10057: already deleted (e.g. by a racing sweep or advisory)
        if e.err_code != 10057:
            raise
