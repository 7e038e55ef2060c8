"""SQL for jobs and uploads used by the routes (all queries are tenant-scoped)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

JOB_COLUMNS = (
    "id, tenant_id, type, priority, status, run, attempt, progress, progress_stage, params,"
    " inputs, result, error_code, error_message, idempotency_key, request_hash, dead_lettered,"
    " created_at, started_at, finished_at, updated_at"
)


def parse_uuid(value: str) -> uuid.UUID | None:
    """``uuid.UUID`` or ``None`` when ``value`` is not a UUID (-> the caller answers 404)."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


async def get_job(conn: Any, tenant_id: str, job_id: str, *, for_update: bool = False) -> Any:
    """The tenant's job row, or ``None`` (also for another tenant's job and non-UUID ids)."""
    jid = parse_uuid(job_id)
    if jid is None:
        return None
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2{lock}", jid, tenant_id
    )


async def get_by_idempotency_key(conn: Any, tenant_id: str, key: str) -> Any:
    return await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2",
        tenant_id,
        key,
    )


async def insert_job(
    conn: Any,
    *,
    job_id: str,
    tenant_id: str,
    type: str,
    priority: str,
    params: dict[str, Any],
    inputs: list[dict[str, Any]],
    idempotency_key: str | None,
    request_hash: str,
) -> Any:
    """Insert a queued job; returns the row, or ``None`` when the idempotency key is taken."""
    return await conn.fetchrow(
        "INSERT INTO jobs (id, tenant_id, type, priority, params, inputs, idempotency_key,"
        " request_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        f" ON CONFLICT (tenant_id, idempotency_key) DO NOTHING RETURNING {JOB_COLUMNS}",
        uuid.UUID(job_id),
        tenant_id,
        type,
        priority,
        params,
        inputs,
        idempotency_key,
        request_hash,
    )


async def mark_published(conn: Any, job_id: Any, run: int) -> bool:
    """Stamp ``bus_published_at`` on the job's run ``run`` (no-op if a newer run started).

    Returns whether a row was stamped.
    """
    res = await conn.execute(
        "UPDATE jobs SET bus_published_at = now()"
        " WHERE id = $1 AND run = $2 AND bus_published_at IS NULL",
        job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id)),
        run,
    )
    return bool(res == "UPDATE 1")


async def mark_published_many(conn: Any, runs: list[tuple[uuid.UUID, int]]) -> int:
    """:func:`mark_published` for many ``(job_id, run)`` pairs in one statement; how many
    rows were stamped."""
    if not runs:
        return 0
    # Lock the rows in id order first, as the tracker does: two transactions that lock
    # several job rows in the same order cannot deadlock.
    res = await conn.execute(
        "UPDATE jobs SET bus_published_at = now() FROM ("
        " SELECT j.id FROM jobs j JOIN unnest($1::uuid[], $2::int[]) AS v(id, run)"
        " ON j.id = v.id AND j.run = v.run WHERE j.bus_published_at IS NULL"
        " ORDER BY j.id FOR NO KEY UPDATE OF j) AS locked"
        " WHERE jobs.id = locked.id",
        [r[0] for r in runs],
        [r[1] for r in runs],
    )
    return int(res.split()[-1])


async def claim_unpublished(conn: Any, *, older_than_s: float, limit: int) -> list[Any]:
    """Queued runs never confirmed on the bus, untouched for ``older_than_s`` seconds.

    Must run inside a transaction: the rows are locked ``FOR UPDATE SKIP LOCKED`` so that
    several API processes republishing at once never take the same row. Oldest first.
    """
    return list(
        await conn.fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'queued'"
            " AND bus_published_at IS NULL"
            " AND updated_at < now() - make_interval(secs => $1)"
            " ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            float(older_than_s),
            limit,
        )
    )


async def list_jobs(
    conn: Any,
    tenant_id: str,
    *,
    type: str | None,
    status: str | None,
    priority: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Any]:
    """Up to ``limit`` jobs, newest first, strictly after the ``(created_at, id)`` cursor."""
    where = ["tenant_id = $1"]
    args: list[Any] = [tenant_id]

    def add(cond: str, value: Any) -> None:
        args.append(value)
        where.append(cond.format(n=len(args)))

    if type:
        add("type = ${n}", type)
    if status:
        add("status = ${n}", status)
    if priority:
        add("priority = ${n}", priority)
    if after is not None:
        args.append(after[0])
        args.append(uuid.UUID(after[1]))
        where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    sql = (
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
        f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}"
    )
    return list(await conn.fetch(sql, *args))


async def uploads_for(conn: Any, tenant_id: str, ids: list[uuid.UUID]) -> dict[str, Any]:
    """The tenant's uploads among ``ids``, keyed by id string."""
    rows = await conn.fetch(
        "SELECT id, key, kind, content_type, size, filename FROM uploads"
        " WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
        tenant_id,
        ids,
    )
    return {str(r["id"]): r for r in rows}


async def mark_cancelled(conn: asyncpg.Connection, job_id: Any) -> Any:
    """Queued or retrying -> cancelled: API-side cancel of a job no worker is running
    (a retrying job waits for its delayed redelivery; a worker that picks it up sees the
    cancel key and ends it with the same, deduplicated ``job.cancelled`` event)."""
    return await conn.fetchrow(
        "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(),"
        " error_code = NULL, error_message = NULL"
        f" WHERE id = $1 AND status IN ('queued', 'retrying') RETURNING {JOB_COLUMNS}",
        job_id,
    )


async def start_new_run(conn: Any, job_id: Any) -> Any:
    """Failed / cancelled -> queued with ``run + 1`` and a clean slate; ``None`` otherwise.

    Also marks the job's pending dead letters replayed (a retry replays them).
    """
    row = await conn.fetchrow(
        "UPDATE jobs SET run = run + 1, status = 'queued', attempt = 0, progress = 0,"
        " progress_stage = NULL, result = NULL, error_code = NULL, error_message = NULL,"
        " dead_lettered = false, started_at = NULL, finished_at = NULL, updated_at = now(),"
        " bus_published_at = NULL"
        f" WHERE id = $1 AND status IN ('failed', 'cancelled') RETURNING {JOB_COLUMNS}",
        job_id,
    )
    if row is not None:
        await conn.execute(
            "UPDATE dead_letters SET replayed_at = now() WHERE job_id = $1 AND replayed_at IS NULL",
            job_id,
        )
    return row
