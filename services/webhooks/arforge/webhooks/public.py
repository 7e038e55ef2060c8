"""What customers see: public event names, subscription patterns and payload bytes.

The internal -> public name table is ``PUBLIC_EVENT_NAMES`` in
``arforge.shared.contracts.events`` (the one mapping); this module applies it.
A payload follows the Standard Webhooks recommended shape
``{"type", "timestamp", "data"}`` plus ``event_id`` and ``subject``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from arforge.shared.contracts.events import PUBLIC_EVENT_NAMES, Event

PROGRESS = "processing.progress"
TEST = "webhook.test"
PUBLIC_TYPES: frozenset[str] = frozenset(PUBLIC_EVENT_NAMES.values())
# Types customers may subscribe to (webhook.test goes only to the subscription tested).
SUBSCRIBABLE: frozenset[str] = PUBLIC_TYPES - {TEST}
# Platform events that services may publish over HTTP (POST /v1/events).
PLATFORM_TYPES: frozenset[str] = frozenset(
    t for t in SUBSCRIBABLE if not t.startswith("processing.")
)
_DOMAINS = frozenset(t.split(".", 1)[0] for t in SUBSCRIBABLE)
_MSG_NS = uuid.UUID("0b7e4a52-3d1c-4f0e-9a57-6c2a1b9e8d43")


def validate_pattern(pattern: str) -> str:
    """Check one subscription pattern; return it. Raises ValueError with a sentence.

    Allowed: a public type (``processing.completed``), a domain wildcard
    (``processing.*``) or ``*`` (everything). Wildcards never include
    ``processing.progress``: it is sent only to subscriptions naming it.
    """
    p = pattern.strip()
    if p == "*" or p in SUBSCRIBABLE:
        return p
    if p.endswith(".*") and p[:-2] in _DOMAINS:
        return p
    raise ValueError(
        f"unknown event type {pattern!r}; use one of {sorted(SUBSCRIBABLE)}, "
        f"a domain wildcard such as 'processing.*', or '*'"
    )


def matches(patterns: Iterable[str], public_type: str) -> bool:
    """Whether a subscription with ``patterns`` receives events of ``public_type``."""
    for p in patterns:
        if p == public_type:
            return True
        if public_type in (PROGRESS, TEST):
            continue  # opt-in by exact name only
        if p == "*" or (p.endswith(".*") and public_type.startswith(p[:-1])):
            return True
    return False


def public_type(event: Event) -> str | None:
    """The customer-facing type of an internal event, or None if customers never see it."""
    return PUBLIC_EVENT_NAMES.get(event.type)


def tenant_of(event: Event) -> str | None:
    """The tenant an event belongs to (``data.tenant_id``), or None."""
    tenant = event.data.get("tenant_id")
    return str(tenant) if tenant else None


def _processing_data(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "job_id": d.get("job_id"),
        "job_type": d.get("type"),
        "status": d.get("status"),
        "run": d.get("run"),
        "attempt": d.get("attempt"),
    }
    status = d.get("status")
    if status == "completed":
        result = d.get("result") or {}
        out["result"] = result
        out["artifacts"] = result.get("artifacts", []) if isinstance(result, dict) else []
    elif status == "failed":
        out["error"] = d.get("error")
    elif status == "progress":
        out["fraction"] = d.get("fraction")
        out["stage"] = d.get("stage")
    return out


def public_payload(event: Event, ptype: str) -> dict[str, Any]:
    """The JSON object delivered for ``event`` under public type ``ptype``."""
    if ptype.startswith("processing."):
        data = _processing_data(event.data)
    else:
        data = {k: v for k, v in event.data.items() if k != "tenant_id"}
    ts = event.time if event.time.tzinfo else event.time.replace(tzinfo=UTC)
    return {
        "type": ptype,
        "timestamp": ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "event_id": event.id,
        "subject": event.subject,
        "data": data,
    }


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes to store, sign and send (compact UTF-8 JSON)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def message_id(event_id: str, subscription_id: str) -> str:
    """The ``webhook-id``: deterministic per (event, subscription), stable across retries."""
    return "msg_" + uuid.uuid5(_MSG_NS, f"{event_id}:{subscription_id}").hex


def make_test_event(tenant_id: str, subscription_id: str) -> Event:
    """A ``webhook.test`` event for one subscription (new id each call)."""
    return Event(
        id=str(uuid.uuid4()),
        type=TEST,
        time=datetime.now(UTC),
        source="arforge.api",
        subject=subscription_id,
        data={"tenant_id": tenant_id, "subscription_id": subscription_id, "message": "test"},
    )
