"""Request and response bodies of the job and dead-letter routes (OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from arforge.shared.contracts import InputRef, Priority

_JOB_ID = "0b7f3c1e-5d2a-4b8e-9f1a-2c3d4e5f6a7b"


class JobCreate(BaseModel):
    """Body of ``POST /v1/jobs``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "photogrammetry",
                    "priority": "default",
                    "inputs": ["5a1e0f3c-8d7b-4c2a-9e6f-1b2c3d4e5f60"],
                    "params": {"quality": "draft", "max_frames": 60},
                }
            ]
        },
    )

    type: str = Field(min_length=1, max_length=64, description="A job type from the registry")
    priority: Priority = Priority.default
    inputs: list[str] = Field([], max_length=1000, description="Upload ids, in order")
    params: dict[str, Any] = Field({}, description="Validated against the job type's params")


class JobProgress(BaseModel):
    fraction: float = Field(ge=0, le=1, examples=[0.42])
    stage: str | None = Field(None, examples=["sfm"])


class JobError(BaseModel):
    code: str = Field(examples=["attempts_exhausted"])
    message: str = Field(examples=["SfM registered 2 of 40 images"])


class Job(BaseModel):
    """A job as the API shows it. ``run`` grows on each retry / dead-letter replay;
    ``attempt`` is the delivery attempt within the run (0 before the first start)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _JOB_ID,
                    "type": "photogrammetry",
                    "priority": "default",
                    "status": "started",
                    "run": 1,
                    "attempt": 1,
                    "progress": {"fraction": 0.42, "stage": "sfm"},
                    "params": {"quality": "draft", "max_frames": 60},
                    "inputs": [],
                    "result": None,
                    "error": None,
                    "dead_lettered": False,
                    "created_at": "2025-01-01T12:00:00Z",
                    "started_at": "2025-01-01T12:00:02Z",
                    "finished_at": None,
                    "updated_at": "2025-01-01T12:01:00Z",
                }
            ]
        }
    )

    id: str
    type: str
    priority: Priority
    status: str = Field(description="queued, started, retrying, completed, failed or cancelled")
    run: int
    attempt: int
    progress: JobProgress
    params: dict[str, Any]
    inputs: list[InputRef]
    result: dict[str, Any] | None = Field(None, description="The type's result, with artifacts")
    error: JobError | None = None
    dead_lettered: bool = False
    idempotency_key: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime


class JobList(BaseModel):
    items: list[Job]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


class DeadLetter(BaseModel):
    """A job run that ran out of attempts (``attempts_exhausted``) or crash-looped."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": _JOB_ID,
                    "type": "photogrammetry",
                    "priority": "default",
                    "run": 1,
                    "reason": "attempts_exhausted",
                    "attempts": 4,
                    "last_error": "native_crash: compute process died with SIGABRT",
                    "created_at": "2025-01-01T13:00:00Z",
                    "replayed_at": None,
                    "job_status": "failed",
                }
            ]
        }
    )

    job_id: str
    type: str
    priority: Priority
    run: int
    reason: str
    attempts: int
    last_error: str | None = None
    created_at: datetime
    replayed_at: datetime | None = None
    job_status: str


class DeadLetterList(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None = None


def job_from_row(row: Any) -> Job:
    """A ``jobs`` row (asyncpg Record or dict) -> :class:`Job`."""
    error = None
    if row["error_code"]:
        error = JobError(code=row["error_code"], message=row["error_message"] or "")
    return Job(
        id=str(row["id"]),
        type=row["type"],
        priority=row["priority"],
        status=row["status"],
        run=row["run"],
        attempt=row["attempt"],
        # float4 column: round off the binary noise (0.1137000024318695 -> 0.1137)
        progress=JobProgress(
            fraction=round(float(row["progress"]), 4), stage=row["progress_stage"]
        ),
        params=row["params"] or {},
        inputs=[InputRef.model_validate(i) for i in row["inputs"] or []],
        result=row["result"],
        error=error,
        dead_lettered=row["dead_lettered"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
    )


def dead_letter_from_row(row: Any) -> DeadLetter:
    return DeadLetter(
        job_id=str(row["job_id"]),
        type=row["type"],
        priority=row["priority"],
        run=row["run"],
        reason=row["reason"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        replayed_at=row["replayed_at"],
        job_status=row["status"],
    )
