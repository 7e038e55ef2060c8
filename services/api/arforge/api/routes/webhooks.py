"""``/v1/webhooks`` (subscriptions) and ``/v1/webhook-deliveries`` (tracked messages).

Tenant-scoped: another tenant's subscription or delivery is a 404. The signing secret is
returned once, at creation and on rotation. Deliveries are sent by the webhook dispatcher
(``python -m arforge.webhooks``); these routes only read and write PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from arforge.webhooks import store as wstore
from arforge.webhooks.public import encode_body, make_test_event, message_id, public_payload
from arforge.webhooks.public import validate_pattern as _validate_pattern
from arforge.webhooks.settings import WebhookSettings
from arforge.webhooks.signing import generate_secret
from arforge.webhooks.ssrf import BlockedTarget, check_url

from ..deps import Tenant, get_pool, require_tenant
from ..errors import ApiError, error_responses, not_found
from ..pagination import decode_cursor, encode_cursor

router = APIRouter(tags=["webhooks"])
TenantDep = Annotated[Tenant, Depends(require_tenant)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
DeliveryStatus = Literal["pending", "succeeded", "failed"]


def _settings(request: Request) -> WebhookSettings:
    """Webhook settings: ``app.state.webhook_settings`` if set, else the environment."""
    ws = getattr(request.app.state, "webhook_settings", None)
    if ws is None:
        ws = WebhookSettings()
        request.app.state.webhook_settings = ws
    return ws  # type: ignore[no-any-return]


def _check_url(request: Request, url: str) -> str:
    try:
        check_url(url, allow_private=_settings(request).allow_private_targets)
    except BlockedTarget as exc:
        code = "invalid_url" if exc.reason == "invalid_url" else "url_not_allowed"
        raise ApiError(422, code, f"webhook URL rejected: {exc.message}") from None
    return url


def _patterns(v: list[str]) -> list[str]:
    out: list[str] = []
    for p in v:
        p = _validate_pattern(p)
        if p not in out:
            out.append(p)
    return out


# --- models ---------------------------------------------------------------------------
class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, examples=["https://example.com/hooks/arforge"])
    event_types: list[str] = Field(
        min_length=1, max_length=50, examples=[["processing.*", "ar_code.scanned"]]
    )
    description: str = Field("", max_length=500)
    enabled: StrictBool = True

    _v = field_validator("event_types")(_patterns)


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048)
    event_types: list[str] | None = Field(None, min_length=1, max_length=50)
    description: str | None = Field(None, max_length=500)
    enabled: StrictBool | None = None

    @field_validator("event_types")
    @classmethod
    def _ev(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _patterns(v)


class Subscription(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        None, description="gone (endpoint answered 410), consecutive_failures, or manual"
    )
    disabled_at: datetime | None = None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None = Field(
        None, description="until then deliveries carry a signature with the previous secret too"
    )
    created_at: datetime
    updated_at: datetime


class SubscriptionWithSecret(Subscription):
    secret: str = Field(description="whsec_... signing secret; shown only now")


class SubscriptionList(BaseModel):
    items: list[Subscription]
    next_cursor: str | None = None


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: int = Field(
        86400, ge=0, le=7 * 86400, description="seconds the old secret keeps signing too"
    )


class RotatedSecret(BaseModel):
    secret: str
    previous_secret_expires_at: datetime


class MessageRef(BaseModel):
    message_id: str = Field(description="the webhook-id of the delivery")


class RedeliverFailed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime = Field(description="failed deliveries created at or after this time")


class RedeliverCount(BaseModel):
    count: int


class Attempt(BaseModel):
    attempt: int
    started_at: datetime
    status_code: int | None
    error_class: str | None
    latency_ms: int
    response_excerpt: str
    succeeded: bool
    next_retry_at: datetime | None


class Delivery(BaseModel):
    id: str = Field(description="the webhook-id header value")
    event_id: str
    subscription_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class DeliveryDetail(Delivery):
    payload: Any = Field(description="the JSON body that was signed and sent")
    attempt_log: list[Attempt]


class DeliveryList(BaseModel):
    items: list[Delivery]
    next_cursor: str | None = None


# --- helpers --------------------------------------------------------------------------
_SUB_COLS = (
    "id, url, event_types, description, enabled, disabled_reason, disabled_at, "
    "consecutive_failures, CASE WHEN previous_secret_expires_at > now() "
    "THEN previous_secret_expires_at END AS previous_secret_expires_at, created_at, updated_at"
)
_MSG_COLS = (
    "id, event_id, subscription_id, event_type, status, attempts, max_attempts, "
    "CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at, "
    "last_status_code, last_error, created_at, updated_at"
)


def _sub(row: asyncpg.Record) -> dict[str, Any]:
    d = dict(row)
    d["id"] = str(d["id"])
    d["event_types"] = list(d["event_types"])
    return d


def _msg(row: asyncpg.Record) -> dict[str, Any]:
    d = dict(row)
    d["subscription_id"] = str(d["subscription_id"])
    return d


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(what) from None


async def _get_sub(pool: asyncpg.Pool, tenant: Tenant, sub_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        f"SELECT {_SUB_COLS} FROM webhook_subscriptions WHERE id = $1 AND tenant_id = $2",
        _uuid(sub_id, "subscription"),
        uuid.UUID(tenant.id),
    )
    if row is None:
        raise not_found("subscription")
    return row


# --- subscriptions --------------------------------------------------------------------
@router.post(
    "/v1/webhooks",
    status_code=201,
    response_model=SubscriptionWithSecret,
    responses=error_responses(401, 422),
)
async def create_subscription(
    body: SubscriptionCreate, request: Request, tenant: TenantDep, pool: PoolDep
) -> dict[str, Any]:
    """Subscribe a URL to event types (wildcards such as ``processing.*``).

    The ``secret`` in the response is shown only once; verify deliveries with it.
    """
    _check_url(request, body.url)
    secret = generate_secret()
    row = await pool.fetchrow(
        "INSERT INTO webhook_subscriptions (tenant_id, url, event_types, description, enabled,"
        f" secret) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_SUB_COLS}",
        uuid.UUID(tenant.id),
        body.url,
        body.event_types,
        body.description,
        body.enabled,
        secret,
    )
    return {**_sub(row), "secret": secret}


@router.get("/v1/webhooks", response_model=SubscriptionList, responses=error_responses(401, 422))
async def list_subscriptions(
    tenant: TenantDep,
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The tenant's subscriptions, newest first, with keyset pagination."""
    args: list[Any] = [uuid.UUID(tenant.id), limit + 1]
    where = "tenant_id = $1"
    if cursor:
        t, i, _ = decode_cursor(cursor)
        where += " AND (created_at, id) < ($3, $4)"
        args += [t, _uuid(i, "cursor")]
    rows = await pool.fetch(
        f"SELECT {_SUB_COLS} FROM webhook_subscriptions WHERE {where} "
        "ORDER BY created_at DESC, id DESC LIMIT $2",
        *args,
    )
    items = [_sub(r) for r in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        nxt = encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"])
    return {"items": items, "next_cursor": nxt}


@router.get(
    "/v1/webhooks/{subscription_id}",
    response_model=Subscription,
    responses=error_responses(401, 404),
)
async def get_subscription(subscription_id: str, tenant: TenantDep, pool: PoolDep) -> dict:
    """One subscription (without its secret)."""
    return _sub(await _get_sub(pool, tenant, subscription_id))


@router.patch(
    "/v1/webhooks/{subscription_id}",
    response_model=Subscription,
    responses=error_responses(401, 404, 422),
)
async def update_subscription(
    subscription_id: str,
    body: SubscriptionUpdate,
    request: Request,
    tenant: TenantDep,
    pool: PoolDep,
) -> dict[str, Any]:
    """Change URL, event types, description or enabled. Re-enabling clears the failure run."""
    await _get_sub(pool, tenant, subscription_id)
    sets: list[str] = []
    args: list[Any] = [uuid.UUID(subscription_id), uuid.UUID(tenant.id)]

    def put(sql: str, value: Any) -> None:
        args.append(value)
        sets.append(sql.format(f"${len(args)}"))

    if body.url is not None:
        put("url = {}", _check_url(request, body.url))
    if body.event_types is not None:
        put("event_types = {}", body.event_types)
    if body.description is not None:
        put("description = {}", body.description)
    if body.enabled is True:
        sets.append(
            "enabled = true, disabled_reason = NULL, disabled_at = NULL, "
            "consecutive_failures = 0, failing_since = NULL"
        )
    elif body.enabled is False:
        sets.append(
            "disabled_reason = CASE WHEN enabled THEN 'manual' ELSE disabled_reason END, "
            "disabled_at = CASE WHEN enabled THEN now() ELSE disabled_at END, enabled = false"
        )
    sets.append("updated_at = now()")
    row = await pool.fetchrow(
        f"UPDATE webhook_subscriptions SET {', '.join(sets)} "
        f"WHERE id = $1 AND tenant_id = $2 RETURNING {_SUB_COLS}",
        *args,
    )
    if row is None:
        raise not_found("subscription")
    return _sub(row)


@router.delete(
    "/v1/webhooks/{subscription_id}", status_code=204, responses=error_responses(401, 404)
)
async def delete_subscription(subscription_id: str, tenant: TenantDep, pool: PoolDep) -> Response:
    """Delete a subscription and its delivery history."""
    res = await pool.execute(
        "DELETE FROM webhook_subscriptions WHERE id = $1 AND tenant_id = $2",
        _uuid(subscription_id, "subscription"),
        uuid.UUID(tenant.id),
    )
    if res != "DELETE 1":
        raise not_found("subscription")
    return Response(status_code=204)


@router.post(
    "/v1/webhooks/{subscription_id}/rotate-secret",
    response_model=RotatedSecret,
    responses=error_responses(401, 404, 422),
)
async def rotate_secret(
    subscription_id: str, tenant: TenantDep, pool: PoolDep, body: RotateSecret | None = None
) -> dict[str, Any]:
    """Replace the signing secret; for ``overlap_s`` seconds deliveries carry two
    signatures (new and old), so receivers can switch without dropping any."""
    overlap = (body or RotateSecret()).overlap_s
    secret = generate_secret()
    row = await pool.fetchrow(
        "UPDATE webhook_subscriptions SET previous_secret = secret, secret = $3, "
        "previous_secret_expires_at = now() + make_interval(secs => $4), updated_at = now() "
        "WHERE id = $1 AND tenant_id = $2 RETURNING previous_secret_expires_at",
        _uuid(subscription_id, "subscription"),
        uuid.UUID(tenant.id),
        secret,
        float(overlap),
    )
    if row is None:
        raise not_found("subscription")
    return {"secret": secret, "previous_secret_expires_at": row["previous_secret_expires_at"]}


@router.post(
    "/v1/webhooks/{subscription_id}/test",
    status_code=202,
    response_model=MessageRef,
    responses=error_responses(401, 404, 409),
)
async def send_test(
    subscription_id: str, request: Request, tenant: TenantDep, pool: PoolDep
) -> dict[str, str]:
    """Queue a ``webhook.test`` delivery to this subscription only; follow it with
    ``GET /v1/webhook-deliveries/{message_id}``."""
    sub = await _get_sub(pool, tenant, subscription_id)
    if not sub["enabled"]:
        raise ApiError(409, "subscription_disabled", "enable the subscription before testing it")
    event = make_test_event(tenant.id, str(sub["id"]))
    mid = message_id(event.id, str(sub["id"]))
    await wstore.insert_messages(
        pool,
        [
            wstore.NewMessage(
                id=mid,
                event_id=event.id,
                subscription_id=str(sub["id"]),
                tenant_id=tenant.id,
                event_type=event.type,
                body=encode_body(public_payload(event, event.type)),
                max_attempts=_settings(request).max_attempts,
            )
        ],
    )
    return {"message_id": mid}


@router.post(
    "/v1/webhooks/{subscription_id}/redeliver-failed",
    status_code=202,
    response_model=RedeliverCount,
    responses=error_responses(401, 404, 409, 422),
)
async def redeliver_failed(
    subscription_id: str, body: RedeliverFailed, tenant: TenantDep, pool: PoolDep
) -> dict[str, int]:
    """Queue one more attempt for every failed delivery of this subscription created at or
    after ``since`` (e.g. after fixing an outage)."""
    sub = await _get_sub(pool, tenant, subscription_id)
    if not sub["enabled"]:
        raise ApiError(409, "subscription_disabled", "enable the subscription before redelivering")
    since = body.since if body.since.tzinfo else body.since.replace(tzinfo=UTC)
    res = await pool.execute(
        "UPDATE webhook_messages SET status = 'pending', next_attempt_at = now(), "
        "max_attempts = attempts + 1, last_error = NULL, updated_at = now() "
        "WHERE subscription_id = $1 AND tenant_id = $2 AND status = 'failed' "
        "AND created_at >= $3",
        sub["id"],
        uuid.UUID(tenant.id),
        since,
    )
    return {"count": int(res.split()[-1])}


# --- deliveries -----------------------------------------------------------------------
@router.get(
    "/v1/webhook-deliveries", response_model=DeliveryList, responses=error_responses(401, 422)
)
async def list_deliveries(
    tenant: TenantDep,
    pool: PoolDep,
    subscription_id: str | None = None,
    status: DeliveryStatus | None = None,
    event_type: str | None = None,
    since: datetime | None = Query(None, description="created at or after"),
    until: datetime | None = Query(None, description="created before"),
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Deliveries newest first, filtered by subscription, status, public event type and
    creation time; ``next_cursor`` continues the listing."""
    args: list[Any] = [uuid.UUID(tenant.id)]
    where = ["tenant_id = $1"]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        where.append(sql.format(f"${len(args)}"))

    if subscription_id is not None:
        add("subscription_id = {}", _uuid(subscription_id, "subscription"))
    if status is not None:
        add("status = {}", status)
    if event_type is not None:
        add("event_type = {}", event_type)
    if since is not None:
        add("created_at >= {}", since if since.tzinfo else since.replace(tzinfo=UTC))
    if until is not None:
        add("created_at < {}", until if until.tzinfo else until.replace(tzinfo=UTC))
    if cursor:
        t, i, _ = decode_cursor(cursor)
        args += [t, i]
        where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    rows = await pool.fetch(
        f"SELECT {_MSG_COLS} FROM webhook_messages WHERE {' AND '.join(where)} "
        f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    items = [_msg(r) for r in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        nxt = encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"])
    return {"items": items, "next_cursor": nxt}


@router.get(
    "/v1/webhook-deliveries/{message_id}",
    response_model=DeliveryDetail,
    responses=error_responses(401, 404),
)
async def get_delivery(message_id: str, tenant: TenantDep, pool: PoolDep) -> dict[str, Any]:
    """One delivery with its payload and every attempt (oldest first)."""
    row = await pool.fetchrow(
        f"SELECT {_MSG_COLS}, body FROM webhook_messages WHERE id = $1 AND tenant_id = $2",
        message_id,
        uuid.UUID(tenant.id),
    )
    if row is None:
        raise not_found("delivery")
    attempts = await pool.fetch(
        "SELECT attempt, started_at, status_code, error_class, latency_ms, response_excerpt,"
        " succeeded, next_retry_at FROM webhook_attempts WHERE message_id = $1 ORDER BY attempt",
        message_id,
    )
    d = _msg(row)
    body = d.pop("body")
    d["payload"] = json.loads(bytes(body))
    d["attempt_log"] = [dict(a) for a in attempts]
    return d


@router.post(
    "/v1/webhook-deliveries/{message_id}/redeliver",
    status_code=202,
    response_model=MessageRef,
    responses=error_responses(401, 404, 409),
)
async def redeliver(message_id: str, tenant: TenantDep, pool: PoolDep) -> dict[str, str]:
    """Queue one more attempt of a finished delivery (same ``webhook-id``, same body)."""
    row = await pool.fetchrow(
        "SELECT m.status, s.enabled FROM webhook_messages m "
        "JOIN webhook_subscriptions s ON s.id = m.subscription_id "
        "WHERE m.id = $1 AND m.tenant_id = $2",
        message_id,
        uuid.UUID(tenant.id),
    )
    if row is None:
        raise not_found("delivery")
    if not row["enabled"]:
        raise ApiError(409, "subscription_disabled", "enable the subscription before redelivering")
    res = await pool.execute(
        "UPDATE webhook_messages SET status = 'pending', next_attempt_at = now(), "
        "max_attempts = attempts + 1, last_error = NULL, updated_at = now() "
        "WHERE id = $1 AND status <> 'pending'",
        message_id,
    )
    if res != "UPDATE 1":
        raise ApiError(409, "delivery_pending", "this delivery is still pending; wait for it")
    return {"message_id": message_id}


# POST /v1/events rides along with this router (app.py includes this module only).
from .events import router as _events_router  # noqa: E402

router.include_router(_events_router)
