"""The event envelope and the job lifecycle, with the one public-name mapping."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

EVENT_VERSION = "1"
_NAMESPACE = uuid.UUID("6f1c1c1e-7a0b-4d7e-9a43-2f1d3c7e8b10")
_NAMESPACE_BYTES = _NAMESPACE.bytes


class JobStatus(StrEnum):
    queued = "queued"
    started = "started"
    progress = "progress"
    retrying = "retrying"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    dead_lettered = "dead_lettered"


TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class Event(BaseModel):
    """One envelope for every event, inside the platform and to customers.

    ``type`` is ``job.<status>`` for the job lifecycle or a platform name such as
    ``ar_code.scanned``; ``subject`` is the job id or AR code id.
    """

    id: str
    type: str = Field(examples=["job.completed"])
    time: datetime
    source: str = Field(examples=["arforge.worker.photogrammetry"])
    subject: str
    data: dict[str, Any] = {}
    version: str = EVENT_VERSION

    def subject_name(self) -> str:
        """The NATS subject: ``events.job.<status>.<job_type>`` or ``events.<type>``."""
        if self.type.startswith("job."):
            return f"events.{self.type}.{self.data.get('type', 'unknown')}"
        return f"events.{self.type}"


def event_id(*parts: object) -> str:
    """A deterministic event id so a re-emitted event deduplicates.

    The id is the UUIDv5 (RFC 9562, section 5.5: SHA-1 of namespace + name, version and
    variant bits set) of the parts joined by ``:`` -- what ``uuid.uuid5`` returns, built
    here without the ``UUID`` object (three per job on the hot path).
    """
    d = hashlib.sha1(_NAMESPACE_BYTES + ":".join(map(str, parts)).encode()).digest()
    h = (d[:6] + bytes(((d[6] & 0x0F) | 0x50, d[7], (d[8] & 0x3F) | 0x80)) + d[9:16]).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def job_event(
    status: JobStatus | str,
    job: dict[str, Any],
    *,
    source: str,
    attempt: int = 0,
    seq: int | None = None,
    **data: Any,
) -> Event:
    """Build a ``job.<status>`` event for ``job`` (needs job_id, type, tenant_id, run).

    The id is derived from job id, run, status and attempt (and ``seq`` for progress),
    so the same transition emitted twice carries the same id.
    """
    status = JobStatus(status)
    run = job.get("run", 1)
    terminal = status.value in TERMINAL or status is JobStatus.dead_lettered
    key: tuple[object, ...] = (job["job_id"], run, status.value)
    if not terminal:
        key += (attempt,) if seq is None else (attempt, seq)
    payload = {
        "job_id": job["job_id"],
        "type": job["type"],
        "tenant_id": job["tenant_id"],
        "priority": job.get("priority", "default"),
        "run": run,
        "attempt": attempt,
        "status": status.value,
        **data,
    }
    return Event(
        id=event_id(*key),
        type=f"job.{status.value}",
        time=datetime.now(UTC),
        source=source,
        subject=job["job_id"],
        data=payload,
    )


# Internal event type -> customer-facing (webhook) event type. The one mapping table.
PUBLIC_EVENT_NAMES: dict[str, str] = {
    "job.completed": "processing.completed",
    "job.failed": "processing.failed",
    "job.progress": "processing.progress",
    "ar_code.created": "ar_code.created",
    "ar_code.scanned": "ar_code.scanned",
    "analytics.updated": "analytics.updated",
    "webhook.test": "webhook.test",
}
