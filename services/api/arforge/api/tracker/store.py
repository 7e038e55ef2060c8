"""Writing one lifecycle event to PostgreSQL: ``job_events`` row + job update, atomically.

Idempotent by event id: the ``job_events`` insert is ``ON CONFLICT (id) DO NOTHING`` and an
event already stored changes nothing, so redeliveries and duplicates are harmless.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from arforge.shared.contracts import Event

from .state import Decision, JobState, decide

log = logging.getLogger("arforge.api.tracker")

_STATE_COLUMNS = (
    "status, run, attempt, progress, progress_stage, result, error_code, error_message,"
    " dead_lettered, started_at, finished_at"
)
_WRITABLE = frozenset(_STATE_COLUMNS.replace(" ", "").split(","))


def state_from_row(row: Any) -> JobState:
    return JobState(
        status=row["status"],
        run=row["run"],
        attempt=row["attempt"],
        progress=float(row["progress"]),
        stage=row["progress_stage"],
        result=row["result"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        dead_lettered=row["dead_lettered"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def job_uuid(event: Event) -> uuid.UUID | None:
    """The job id of a ``job.*`` event (``subject``, else ``data.job_id``), or ``None``."""
    for raw in (event.subject, event.data.get("job_id")):
        try:
            return uuid.UUID(str(raw))
        except (ValueError, TypeError):
            continue
    return None


async def record_event(conn: Any, event: Event) -> Decision | None:
    """Store ``event`` and apply it to its job in one transaction.

    Returns the :class:`Decision` applied, or ``None`` when the event was already stored
    (duplicate) or names no valid job id. A job row that does not exist keeps the event in
    ``job_events`` and changes nothing.
    """
    job_id = job_uuid(event)
    if job_id is None:
        log.warning("event %s has no valid job id (subject %r); skipped", event.id, event.subject)
        return None
    data = event.data
    async with conn.transaction():
        seq = await conn.fetchval(
            "INSERT INTO job_events (id, job_id, type, time, source, run, attempt, data)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING seq",
            event.id,
            job_id,
            event.type,
            event.time,
            event.source,
            int(data.get("run", 1)),
            int(data.get("attempt", 0)),
            data,
        )
        if seq is None:
            return None
        row = await conn.fetchrow(
            f"SELECT {_STATE_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE", job_id
        )
        if row is None:
            log.warning("event %s for unknown job %s stored without a job update", event.id, job_id)
            return Decision(why="unknown job")
        decision = decide(state_from_row(row), event)
        if decision.changes:
            cols = [c for c in decision.changes if c in _WRITABLE]
            sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
            await conn.execute(
                f"UPDATE jobs SET {sets}, updated_at = now() WHERE id = $1",
                job_id,
                *(decision.changes[c] for c in cols),
            )
        if decision.dead_letter:
            dl = decision.dead_letter
            await conn.execute(
                "INSERT INTO dead_letters (job_id, run, reason, attempts, last_error)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, run) DO NOTHING",
                job_id,
                dl["run"],
                dl["reason"],
                dl["attempts"],
                dl["last_error"],
            )
    return decision
