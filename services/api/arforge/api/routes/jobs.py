"""``/v1/jobs``: submit, read, list, cancel, retry, follow events (SSE), fetch artifacts."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import ValidationError

from arforge.shared.contracts import TERMINAL, JobStatus, Priority, Registry, job_event
from arforge.shared.storage.base import ObjectStore
from arforge.shared.storage.local import LocalStore

from ..db import jobs as q
from ..deps import (
    Tenant,
    get_bus,
    get_marks,
    get_pool,
    get_registry,
    get_settings,
    get_store,
    require_tenant,
)
from ..downloads import file_download
from ..errors import ApiError, ErrorResponse, error_responses, field_errors, not_found
from ..models import Job, JobCreate, JobList, job_from_row
from ..pagination import decode_cursor, encode_cursor
from ..ranges import strong_etag
from ..sse import job_event_stream
from ..submit import SOURCE, job_ref, publish_and_mark

log = logging.getLogger("arforge.api.jobs")
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

TenantDep = Annotated[Tenant, Depends(require_tenant)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]


def request_hash(body: JobCreate) -> str:
    """SHA-256 of the canonical JSON body (same body -> same hash, key order ignored)."""
    canon = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def _validate_params(registry: Registry, body: JobCreate) -> dict[str, Any]:
    if body.type not in registry:
        raise ApiError(
            422,
            "unknown_job_type",
            f"unknown job type {body.type!r}; known types: {', '.join(registry.types())}",
        )
    spec = registry[body.type]
    if not spec.implemented:
        raise ApiError(
            422,
            "job_type_unavailable",
            f"no worker for job type {spec.type!r} exists in this version",
        )
    try:
        params = spec.validate_params(body.params)
    except ValidationError as exc:
        fields = field_errors(exc.errors())
        for f in fields:
            f["loc"] = ["body", "params", *f["loc"]]
        first = fields[0]
        where = ".".join(str(p) for p in first["loc"][1:])
        raise ApiError(
            422, "validation_error", f"invalid params: {where}: {first['message']}", fields=fields
        ) from None
    return params.model_dump(mode="json")


async def _resolve_inputs(
    conn: Any, registry: Registry, tenant: Tenant, body: JobCreate, store: ObjectStore | None
) -> list[dict[str, Any]]:
    """The job's input refs from the tenant's uploads; 422 ``invalid_inputs`` when the set
    cannot make a job of this type, ``input_missing`` when an upload's file is gone."""
    spec = registry[body.type]
    n = len(body.inputs)
    if not spec.min_inputs <= n <= spec.max_inputs:
        raise ApiError(
            422,
            "invalid_inputs",
            f"{spec.type} takes {spec.min_inputs} to {spec.max_inputs} inputs, got {n}",
        )
    if len(set(body.inputs)) != n:
        raise ApiError(422, "invalid_inputs", "the same upload is listed twice in inputs")
    ids = []
    for raw in body.inputs:
        uid = q.parse_uuid(raw)
        if uid is None:
            raise ApiError(422, "invalid_inputs", f"input {raw!r} is not an upload id")
        ids.append(uid)
    found = await q.uploads_for(conn, tenant.id, ids)
    out = []
    for uid in ids:
        up = found.get(str(uid))
        if up is None:
            raise ApiError(422, "invalid_inputs", f"upload {uid} not found")
        if spec.input_kinds and up["kind"] not in spec.input_kinds:
            kinds = ", ".join(sorted(spec.input_kinds))
            raise ApiError(
                422,
                "invalid_inputs",
                f"upload {uid} is a {up['kind']}; {spec.type} accepts {kinds}",
            )
        if store is not None and await store.head(up["key"]) is None:
            raise ApiError(
                422,
                "input_missing",
                f"the file of upload {uid} is no longer in storage; upload it again",
            )
        out.append(
            {
                "upload_id": str(uid),
                "key": up["key"],
                "kind": up["kind"],
                "content_type": up["content_type"],
                "filename": up["filename"],
                "size": up["size"],
            }
        )
    problem = spec.input_problem([i["kind"] for i in out])
    if problem is not None:
        raise ApiError(422, "invalid_inputs", problem)
    return out


def _idempotent_replay(row: Any, digest: str, response: Response) -> Job:
    if row["request_hash"] != digest:
        raise ApiError(
            409,
            "idempotency_conflict",
            f"this Idempotency-Key was already used for job {row['id']} with a different "
            "request body",
            details={"job_id": str(row["id"])},
        )
    response.status_code = 200
    return job_from_row(row)


@router.post(
    "",
    status_code=201,
    response_model=Job,
    summary="Submit a job",
    description=(
        "Validates `params` against the job type's contract and `inputs` against its accepted "
        "upload kinds and count (422 `job_type_unavailable` for a type listed in the contracts "
        "whose worker does not exist in this version), stores the job (status `queued`) and "
        "publishes it (if the queue is briefly unavailable the job is still accepted and "
        "published again shortly). With an "
        "`Idempotency-Key` header the same key and body return the same job (200); the same "
        "key with a different body is a 409 `idempotency_conflict` whose `details.job_id` names "
        "the job the key belongs to."
    ),
    responses={
        200: {"model": Job, "description": "Idempotent replay: the job created earlier"},
        **error_responses(401, 409, 422),
    },
)
async def create_job(
    body: JobCreate,
    response: Response,
    tenant: TenantDep,
    pool: PoolDep,
    registry: Annotated[Registry, Depends(get_registry)],
    bus: Annotated[Any, Depends(get_bus)],
    marks: Annotated[Any, Depends(get_marks)],
    store: Annotated[ObjectStore, Depends(get_store)],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=200, min_length=1)
    ] = None,
) -> Job:
    digest = request_hash(body)
    async with pool.acquire() as conn:
        if idempotency_key is not None:
            existing = await q.get_by_idempotency_key(conn, tenant.id, idempotency_key)
            if existing is not None:
                return _idempotent_replay(existing, digest, response)
        params = _validate_params(registry, body)
        inputs = await _resolve_inputs(conn, registry, tenant, body, store)
        job_id = str(uuid.uuid4())
        row = await q.insert_job(
            conn,
            job_id=job_id,
            tenant_id=tenant.id,
            type=body.type,
            priority=body.priority.value,
            params=params,
            inputs=inputs,
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
        if row is None:  # a concurrent request with the same key won the insert
            existing = await q.get_by_idempotency_key(conn, tenant.id, idempotency_key or "")
            return _idempotent_replay(existing, digest, response)
        # The row is the outbox entry: a failed publish is logged and left to the
        # republisher; the job is stored and will run, so the answer is still 201.
        await publish_and_mark(conn, bus, row, marks)
    return job_from_row(row)


# The statuses a job itself can have (JobStatus also names events: progress, dead_lettered).
JOB_STATUSES = tuple(
    s.value for s in JobStatus if s not in (JobStatus.progress, JobStatus.dead_lettered)
)


def _bad_query(name: str, value: str, allowed: Any) -> ApiError:
    msg = f"{name} {value!r} is not one of: {', '.join(allowed)}"
    return ApiError(
        422,
        "validation_error",
        f"invalid request: query.{name}: {msg}",
        fields=[{"loc": ["query", name], "message": msg, "type": "enum"}],
    )


@router.get(
    "",
    response_model=JobList,
    summary="List jobs, newest first",
    description="Keyset pagination: pass `next_cursor` back as `cursor` until it is null. "
    "`status` must be a job status and `type` a registered job type (else 422 "
    "`validation_error`).",
    responses=error_responses(401, 422),
)
async def list_jobs(
    tenant: TenantDep,
    pool: PoolDep,
    registry: Annotated[Registry, Depends(get_registry)],
    type: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    priority: Priority | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JobList:
    if status is not None and status not in JOB_STATUSES:
        raise _bad_query("status", status, JOB_STATUSES)
    if type is not None and type not in registry:
        raise _bad_query("type", type, registry.types())
    after = None
    if cursor:
        created, id_, _ = decode_cursor(cursor)
        if q.parse_uuid(id_) is None:
            raise ApiError(422, "invalid_cursor", "the cursor is malformed; use next_cursor")
        after = (created, id_)
    async with pool.acquire() as conn:
        rows = await q.list_jobs(
            conn,
            tenant.id,
            type=type,
            status=status,
            priority=priority.value if priority else None,
            after=after,
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return JobList(items=[job_from_row(r) for r in rows], next_cursor=nxt)


@router.get(
    "/{job_id}",
    response_model=Job,
    summary="Get a job",
    responses=error_responses(401, 404),
)
async def get_job(job_id: str, tenant: TenantDep, pool: PoolDep) -> Job:
    row = await q.get_job(pool, tenant.id, job_id)
    if row is None:
        raise not_found("job")
    return job_from_row(row)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=Job,
    summary="Cancel a job",
    description=(
        "A queued job, or one waiting for a retry, is cancelled at once (`job.cancelled`); "
        "a running one is stopped by its "
        "worker, which kills the compute process group. 409 `job_finished` when the job "
        "already ended."
    ),
    responses=error_responses(401, 404, 409),
)
async def cancel_job(
    job_id: str, tenant: TenantDep, pool: PoolDep, bus: Annotated[Any, Depends(get_bus)]
) -> Job:
    async with pool.acquire() as conn, conn.transaction():
        row = await q.get_job(conn, tenant.id, job_id, for_update=True)
        if row is None:
            raise not_found("job")
        if row["status"] in TERMINAL:
            raise ApiError(409, "job_finished", f"the job already ended ({row['status']})")
        cancelled = await q.mark_cancelled(conn, row["id"])
    await bus.request_cancel(str(row["id"]), row["run"])
    if cancelled is not None:
        await bus.emit(job_event(JobStatus.cancelled, job_ref(cancelled), source=SOURCE, attempt=0))
        row = cancelled
    return job_from_row(row)


async def resubmit(conn: Any, bus: Any, job_id: Any) -> Any:
    """Start a new run of a failed / cancelled job and publish it; ``None`` if not allowed.

    Removes the job's message from the DLQ. The cancel request of earlier runs stays: a
    message of a cancelled run still in JOBS is dropped when a worker pulls it, while the
    new run (``run + 1``) is not affected. A failed publish is left to the republisher
    (:mod:`arforge.api.outbox`).
    """
    async with conn.transaction():
        row = await q.start_new_run(conn, job_id)
    if row is None:
        return None
    await bus.delete_dead_letter(str(row["id"]))
    await publish_and_mark(conn, bus, row)
    return row


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=Job,
    summary="Retry a failed or cancelled job",
    description="Starts run `run + 1` from the same params and inputs; 409 `job_not_retryable` "
    "for jobs that are not failed or cancelled.",
    responses=error_responses(401, 404, 409),
)
async def retry_job(
    job_id: str, tenant: TenantDep, pool: PoolDep, bus: Annotated[Any, Depends(get_bus)]
) -> Job:
    async with pool.acquire() as conn:
        row = await q.get_job(conn, tenant.id, job_id)
        if row is None:
            raise not_found("job")
        new = await resubmit(conn, bus, row["id"])
    if new is None:
        raise ApiError(
            409,
            "job_not_retryable",
            f"only failed or cancelled jobs can be retried; this one is {row['status']}",
        )
    return job_from_row(new)


@router.get(
    "/{job_id}/events",
    summary="Follow a job's events (Server-Sent Events)",
    description=(
        "`text/event-stream`: first the stored history, then live events, one SSE message per "
        "event (`id` = event id, `event` = event type, `data` = the event envelope as JSON). "
        "The stream ends after the terminal event of the job's current run. Live events come "
        "from PostgreSQL (polled every 0.5 s), the same table the history is read from, so "
        "there is no gap or duplicate between the two. Send `Last-Event-ID` to resume."
    ),
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "example": 'id: 5f0...\nevent: job.progress\ndata: {"id": "5f0...", '
                    '"type": "job.progress", "data": {"fraction": 0.4, "stage": "sfm"}}\n\n'
                }
            },
            "description": "An event stream",
        },
        **error_responses(401, 404),
    },
)
async def job_events(
    job_id: str,
    request: Request,
    tenant: TenantDep,
    pool: PoolDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
) -> StreamingResponse:
    row = await q.get_job(pool, tenant.id, job_id)
    if row is None:
        raise not_found("job")
    return StreamingResponse(
        job_event_stream(pool, row["id"], request, last_event_id=last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.head("/{job_id}/artifacts/{name}", include_in_schema=False)  # GET's headers
@router.get(
    "/{job_id}/artifacts/{name}",
    summary="Download an artifact",
    description="307 to a presigned URL when the store offers one, else the file is streamed. "
    "From local storage: one byte range per request (`Range: bytes=0-1023` answers 206; "
    "several ranges or a malformed header get the whole file), a strong `ETag` (the "
    "artifact's SHA-256) for `If-None-Match` (304) and `If-Range`, and HEAD.",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        206: {"description": "The requested byte range (local storage)"},
        307: {"description": "Redirect to a presigned URL"},
        304: {"description": "Not modified (`If-None-Match` matched the ETag)"},
        416: {"model": ErrorResponse, "description": "The range starts beyond the end"},
        **error_responses(401, 404),
    },
)
async def get_artifact(
    job_id: str,
    name: str,
    tenant: TenantDep,
    pool: PoolDep,
    store: Annotated[ObjectStore, Depends(get_store)],
    request: Request,
) -> Response:
    row = await q.get_job(pool, tenant.id, job_id)
    if row is None:
        raise not_found("job")
    artifacts = (row["result"] or {}).get("artifacts") or []
    art = next((a for a in artifacts if a.get("name") == name), None)
    if art is None:
        raise ApiError(404, "artifact_not_found", f"the job has no artifact named {name!r}")
    expiry = get_settings(request).storage.presign_expiry_s
    url = await store.presigned_url(art["key"], expiry)
    if url:
        return RedirectResponse(url, status_code=307)
    head = await store.head(art["key"])
    if head is None:
        raise ApiError(404, "artifact_not_found", f"artifact {name!r} is missing from storage")
    media_type = art.get("content_type") or head.content_type
    if isinstance(store, LocalStore):
        sha = art.get("sha256") or f"{head.size}-{head.key}"
        return file_download(
            request,
            store.path_for(art["key"]),
            etag=strong_etag(sha),
            media_type=media_type,
            filename=name,
        )
    safe = name.replace('"', "")
    return StreamingResponse(
        store.stream(art["key"]),
        media_type=media_type,
        headers={
            "Content-Length": str(head.size),
            "Content-Disposition": f'attachment; filename="{safe}"',
        },
    )
