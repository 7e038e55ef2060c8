"""Turning a ``jobs`` row into a JetStream job message (and its ``job.queued`` event)."""

from __future__ import annotations

from typing import Any

from arforge.shared.contracts import InputRef, JobMessage, JobStatus, job_event

SOURCE = "arforge.api"


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
    """Submit the row's run to JOBS, then emit ``job.queued`` (both deduplicated by id)."""
    await bus.submit(job_message(row))
    await bus.emit(job_event(JobStatus.queued, job_ref(row), source=SOURCE, attempt=0))
