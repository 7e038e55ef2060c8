"""``POST /v1/events``: an authorised service publishes a platform event.

Platform events (``ar_code.created``, ``ar_code.scanned``, ``analytics.updated``) go onto
the EVENTS stream with the caller's tenant; the webhook dispatcher delivers them to the
tenant's matching subscriptions. Job lifecycle events are emitted by the platform only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from arforge.shared.bus import EVENTS
from arforge.shared.contracts.events import Event, event_id
from arforge.webhooks.public import PLATFORM_TYPES

from ..deps import Tenant, get_bus, require_tenant
from ..errors import ApiError, error_responses

router = APIRouter(tags=["events"])
TenantDep = Annotated[Tenant, Depends(require_tenant)]
MAX_DATA_BYTES = 64 * 1024


class EventCreate(BaseModel):
    type: str = Field(examples=["ar_code.scanned"])
    subject: str = Field(min_length=1, max_length=200, description="e.g. the AR code id")
    data: dict[str, Any] = {}
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the same key (per tenant and type) publishes the event only once "
        "within 2 minutes (the event stream's duplicate window); the same key with another "
        "subject or data in that window is a 409 `idempotency_conflict`",
    )


class EventAccepted(BaseModel):
    id: str
    type: str


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventAccepted,
    responses=error_responses(401, 409, 413, 422),
)
async def publish_event(
    body: EventCreate, tenant: TenantDep, bus: Annotated[Any, Depends(get_bus)]
) -> dict[str, str]:
    """Publish a platform event for the caller's tenant (``data.tenant_id`` is set here)."""
    if body.type not in PLATFORM_TYPES:
        raise ApiError(
            422,
            "unknown_event_type",
            f"unknown event type {body.type!r}; publishable: {', '.join(sorted(PLATFORM_TYPES))}",
        )
    data = {**body.data, "tenant_id": tenant.id}
    event = Event(
        id=event_id("api", tenant.id, body.type, body.idempotency_key)
        if body.idempotency_key
        else str(uuid.uuid4()),
        type=body.type,
        time=datetime.now(UTC),
        source="arforge.api",
        subject=body.subject,
        data=data,
    )
    if len(event.model_dump_json()) > MAX_DATA_BYTES:
        raise ApiError(413, "payload_too_large", f"event data must be under {MAX_DATA_BYTES} bytes")
    ack = await bus.emit(event)
    if ack.duplicate and not await _same_as_stored(bus, ack.seq, event):
        raise ApiError(
            409,
            "idempotency_conflict",
            f"this idempotency_key was already used for event {event.id} with another "
            "subject or data",
            details={"event_id": event.id},
        )
    return {"id": event.id, "type": event.type}


async def _same_as_stored(bus: Any, seq: int, event: Event) -> bool:
    """Whether the event stored at ``seq`` has ``event``'s subject and data."""
    stored = Event.model_validate_json((await bus.js.get_msg(EVENTS, seq)).data or b"{}")
    return (stored.subject, stored.data) == (event.subject, event.data)
