"""Writing lifecycle events to PostgreSQL: ``job_events`` rows + job updates, atomically.

Idempotent by event id: the ``job_events`` insert is ``ON CONFLICT (id) DO NOTHING`` and an
event already stored changes nothing, so redeliveries and duplicates are harmless.

:func:`record_event` writes one event (3-4 statements); :func:`record_events` writes a
whole fetched batch in a constant number of statements and ends in the same rows as
:func:`record_event` applied to each event in order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from arforge.shared.contracts import Event

from .batch import COLUMNS, WRITABLE, BatchPlan, Pending, job_uuid, pending_events, plan_batch
from .state import Decision, JobState, decide

__all__ = ["job_uuid", "record_event", "record_events", "state_from_row"]

log = logging.getLogger("arforge.api.tracker")

_STATE_COLUMNS = ", ".join(c for c, _ in COLUMNS)


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


_INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (job_id, run, reason, attempts, last_error)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, run) DO NOTHING"
)


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
            f"SELECT {_STATE_COLUMNS} FROM jobs WHERE id = $1 FOR NO KEY UPDATE", job_id
        )
        if row is None:
            log.warning("event %s for unknown job %s stored without a job update", event.id, job_id)
            return Decision(why="unknown job")
        decision = decide(state_from_row(row), event)
        if decision.changes:
            cols = [c for c in decision.changes if c in WRITABLE]
            sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
            await conn.execute(
                f"UPDATE jobs SET {sets}, updated_at = now() WHERE id = $1",
                job_id,
                *(decision.changes[c] for c in cols),
            )
        if decision.dead_letter:
            await _insert_dead_letter(conn, job_id, decision.dead_letter)
    return decision


async def _insert_dead_letter(conn: Any, job_id: Any, dl: dict[str, Any]) -> None:
    await conn.execute(
        _INSERT_DEAD_LETTER, job_id, dl["run"], dl["reason"], dl["attempts"], dl["last_error"]
    )


# --- the batch path ----------------------------------------------------------------------
# Arrays travel as one parameter each; jsonb values as text (json.dumps, like the pool's
# jsonb codec) cast in SQL. WITH ORDINALITY + ORDER BY keeps ``seq`` in batch order.
_INSERT_EVENTS = (
    "INSERT INTO job_events (id, job_id, type, time, source, run, attempt, data)"
    " SELECT e.id, e.job_id, e.type, e.time, e.source, e.run, e.attempt, e.data::jsonb"
    " FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[],"
    " $6::int4[], $7::int4[], $8::text[])"
    " WITH ORDINALITY AS e(id, job_id, type, time, source, run, attempt, data, ord)"
    " ORDER BY e.ord"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)
_LOCK_JOBS = (
    f"SELECT id, {_STATE_COLUMNS} FROM jobs WHERE id = ANY($1::uuid[])"
    " ORDER BY id FOR NO KEY UPDATE"
)
_COLUMN_TYPES = {
    "status": "text",
    "run": "int4",
    "attempt": "int4",
    "progress": "float4",
    "progress_stage": "text",
    "result": "text",  # cast to jsonb below
    "error_code": "text",
    "error_message": "text",
    "dead_lettered": "bool",
    "started_at": "timestamptz",
    "finished_at": "timestamptz",
}


def _update_jobs_sql() -> str:
    # each column is written only where its bit is set in v.mask: exactly the columns
    # some event's decision changed, as record_event's per-event UPDATEs would
    sets = []
    for i, (col, _) in enumerate(COLUMNS):
        value = "v.result::jsonb" if col == "result" else f"v.{col}"
        sets.append(f"{col} = CASE WHEN v.mask & {1 << i} <> 0 THEN {value} ELSE j.{col} END")
    params = ", ".join(f"${i + 3}::{_COLUMN_TYPES[col]}[]" for i, (col, _) in enumerate(COLUMNS))
    names = ", ".join(col for col, _ in COLUMNS)
    return (
        f"UPDATE jobs AS j SET {', '.join(sets)}, updated_at = now()"
        f" FROM unnest($1::uuid[], $2::int4[], {params}) AS v(id, mask, {names})"
        " WHERE j.id = v.id"
    )


_UPDATE_JOBS = _update_jobs_sql()


def _event_arrays(pending: Sequence[Pending]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(8)]
    for p in pending:
        e, data = p.event, p.event.data
        row = (
            e.id,
            p.job_id,
            e.type,
            e.time,
            e.source,
            int(data.get("run", 1)),
            int(data.get("attempt", 0)),
            json.dumps(data),
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


def _update_arrays(plan: BatchPlan) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(2 + len(COLUMNS))]
    result_at = 2 + [c for c, _ in COLUMNS].index("result")
    for job_id, write in plan.writes.items():
        row = [job_id, write.mask, *write.values()]
        if row[result_at] is not None:
            row[result_at] = json.dumps(row[result_at])
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


async def record_events(conn: Any, events: Sequence[Event]) -> BatchPlan:
    """Store ``events`` (``job.*``, stream order) and apply them to their jobs, in one
    transaction opened here, with a constant number of statements.

    The rows written are exactly those of :func:`record_event` applied to each event in
    order: events without a valid job id are skipped with a warning, an event id already
    stored (or earlier in ``events``) changes nothing, an event of an unknown job is stored
    and changes nothing. Statements: one multi-row ``job_events`` insert; one ``SELECT ...
    ORDER BY id FOR NO KEY UPDATE`` of the jobs of the newly stored events (id order, so trackers
    sharing the durable cannot deadlock on the rows); one ``UPDATE`` of every changed job;
    one ``dead_letters`` insert per dead-letter row. Returns the :class:`BatchPlan` applied
    (``plan.decisions`` maps each newly stored event id to its decision). Raises whatever
    asyncpg raises (e.g. a value out of a column's range); then nothing was written.
    """
    pending = pending_events(events)
    if not pending:
        return BatchPlan()
    async with conn.transaction():
        inserted = {r["id"] for r in await conn.fetch(_INSERT_EVENTS, *_event_arrays(pending))}
        new = [p for p in pending if p.event.id in inserted]
        if not new:
            return BatchPlan()
        job_ids = sorted({p.job_id for p in new})
        rows = {r["id"]: state_from_row(r) for r in await conn.fetch(_LOCK_JOBS, job_ids)}
        plan = plan_batch(rows, new)
        if plan.writes:
            await conn.execute(_UPDATE_JOBS, *_update_arrays(plan))
        for job_id, dl in plan.dead_letters:
            await _insert_dead_letter(conn, job_id, dl)
    return plan
