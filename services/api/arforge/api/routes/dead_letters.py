"""``/v1/dead-letters``: job runs that ran out of attempts or crash-looped, and replay."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query

from ..db import jobs as q
from ..deps import Tenant, get_bus, get_pool, require_tenant
from ..errors import ApiError, error_responses, not_found
from ..models import DeadLetter, DeadLetterList, Job, dead_letter_from_row, job_from_row
from ..pagination import decode_cursor, encode_cursor
from .jobs import resubmit

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])

TenantDep = Annotated[Tenant, Depends(require_tenant)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]

_SELECT = (
    "SELECT d.job_id, d.run, d.reason, d.attempts, d.last_error, d.created_at, d.replayed_at,"
    " j.type, j.priority, j.status FROM dead_letters d JOIN jobs j ON j.id = d.job_id"
)


@router.get(
    "",
    response_model=DeadLetterList,
    summary="List dead letters, newest first",
    description="By default only those not yet replayed; `replayed=true` lists replayed ones.",
    responses=error_responses(401, 422),
)
async def list_dead_letters(
    tenant: TenantDep,
    pool: PoolDep,
    replayed: bool = False,
    type: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> DeadLetterList:
    where = ["j.tenant_id = $1", f"d.replayed_at IS {'NOT ' if replayed else ''}NULL"]
    args: list[Any] = [tenant.id]
    if type:
        args.append(type)
        where.append(f"j.type = ${len(args)}")
    if cursor:
        created, id_, extra = decode_cursor(cursor)
        jid = q.parse_uuid(id_)
        if jid is None or not isinstance(extra.get("r"), int):
            raise ApiError(422, "invalid_cursor", "the cursor is malformed; use next_cursor")
        args += [created, jid, extra["r"]]
        n = len(args)
        where.append(f"(d.created_at, d.job_id, d.run) < (${n - 2}, ${n - 1}, ${n})")
    args.append(limit + 1)
    rows = await pool.fetch(
        f"{_SELECT} WHERE {' AND '.join(where)}"
        f" ORDER BY d.created_at DESC, d.job_id DESC, d.run DESC LIMIT ${len(args)}",
        *args,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = None
    if more:
        last = rows[-1]
        nxt = encode_cursor(last["created_at"], last["job_id"], {"r": last["run"]})
    return DeadLetterList(items=[dead_letter_from_row(r) for r in rows], next_cursor=nxt)


async def _latest(pool: Any, tenant: Tenant, job_id: str) -> Any:
    jid = q.parse_uuid(job_id)
    if jid is None:
        return None
    return await pool.fetchrow(
        f"{_SELECT} WHERE d.job_id = $1 AND j.tenant_id = $2 ORDER BY d.run DESC LIMIT 1",
        jid,
        tenant.id,
    )


@router.get(
    "/{job_id}",
    response_model=DeadLetter,
    summary="Get a job's latest dead letter",
    responses=error_responses(401, 404),
)
async def get_dead_letter(job_id: str, tenant: TenantDep, pool: PoolDep) -> DeadLetter:
    row = await _latest(pool, tenant, job_id)
    if row is None:
        raise not_found("dead letter")
    return dead_letter_from_row(row)


@router.post(
    "/{job_id}/replay",
    status_code=202,
    response_model=Job,
    summary="Replay a dead-lettered job",
    description="Starts run `run + 1`, marks the dead letter replayed and removes it from the "
    "DLQ stream. 409 `already_replayed` when it was replayed before.",
    responses=error_responses(401, 404, 409),
)
async def replay_dead_letter(
    job_id: str, tenant: TenantDep, pool: PoolDep, bus: Annotated[Any, Depends(get_bus)]
) -> Job:
    row = await _latest(pool, tenant, job_id)
    if row is None:
        raise not_found("dead letter")
    if row["replayed_at"] is not None:
        raise ApiError(409, "already_replayed", "this dead letter was already replayed")
    async with pool.acquire() as conn:
        new = await resubmit(conn, bus, uuid.UUID(str(row["job_id"])))
    if new is None:
        raise ApiError(
            409,
            "job_not_retryable",
            f"the job is {row['status']}; only failed or cancelled jobs can be replayed",
        )
    return job_from_row(new)
