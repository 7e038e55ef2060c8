"""PostgreSQL side of delivery: record messages, claim due ones, record attempts.

Tables (migration ``010_webhooks.sql``): ``webhook_subscriptions``, ``webhook_messages``
(one per (event, subscription), idempotent on that pair), ``webhook_attempts``.

Claiming uses a lease instead of holding row locks through the HTTP attempt:
``SELECT ... FOR UPDATE SKIP LOCKED`` picks due rows that no other dispatcher is claiming,
and the same statement pushes their ``next_attempt_at`` forward by the lease and bumps
``claim_token``. Recording an attempt only succeeds with the token it was claimed with,
so a dispatcher whose lease ran out (stalled, then woke) cannot overwrite a newer claim.
A dispatcher that dies mid-attempt leaves the row to be claimed again when the lease ends
(at-least-once; receivers deduplicate on ``webhook-id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class NewMessage:
    id: str
    event_id: str
    subscription_id: str
    tenant_id: str
    event_type: str
    body: bytes
    max_attempts: int


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what is needed to send it."""

    id: str
    subscription_id: str
    tenant_id: str
    event_type: str
    body: bytes
    attempts: int  # attempts already made
    max_attempts: int
    claim_token: int
    url: str
    enabled: bool
    secrets: tuple[str, ...]  # current first, then the previous one while it overlaps


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    event_types: tuple[str, ...]
    created_at: datetime


async def subscriptions_for(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str):
    """Enabled subscriptions of a tenant: ``[Subscription]``."""
    rows = await conn.fetch(
        "SELECT id, url, event_types, created_at FROM webhook_subscriptions "
        "WHERE tenant_id = $1::uuid AND enabled",
        tenant_id,
    )
    return [
        Subscription(str(r["id"]), r["url"], tuple(r["event_types"]), r["created_at"]) for r in rows
    ]


async def insert_messages(
    conn: asyncpg.Connection | asyncpg.Pool, msgs: Sequence[NewMessage]
) -> int:
    """Insert messages due now; existing (event, subscription) pairs are skipped.

    Returns how many rows were new.
    """
    if not msgs:
        return 0
    rows = await conn.fetch(
        """
        INSERT INTO webhook_messages
            (id, event_id, subscription_id, tenant_id, event_type, body, max_attempts,
             next_attempt_at)
        SELECT u.id, u.event_id, u.sub_id, u.tenant_id, u.event_type, u.body, u.max_attempts,
               now()
        FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], $6::bytea[],
                    $7::int[]) AS u(id, event_id, sub_id, tenant_id, event_type, body,
                                    max_attempts)
        ON CONFLICT DO NOTHING
        RETURNING id
        """,
        [m.id for m in msgs],
        [m.event_id for m in msgs],
        [m.subscription_id for m in msgs],
        [m.tenant_id for m in msgs],
        [m.event_type for m in msgs],
        [m.body for m in msgs],
        [m.max_attempts for m in msgs],
    )
    return len(rows)


async def due_candidates(
    pool: asyncpg.Pool, limit: int, exclude_subscriptions: Sequence[str]
) -> list[tuple[str, str]]:
    """Up to ``limit`` due ``(message_id, subscription_id)`` pairs, oldest due first,
    skipping subscriptions in ``exclude_subscriptions`` (those already at capacity here)."""
    rows = await pool.fetch(
        "SELECT id, subscription_id FROM webhook_messages "
        "WHERE status = 'pending' AND next_attempt_at <= now() "
        "AND NOT (subscription_id = ANY($2::uuid[])) "
        "ORDER BY next_attempt_at LIMIT $1",
        limit,
        list(exclude_subscriptions),
    )
    return [(r["id"], str(r["subscription_id"])) for r in rows]


async def claim(pool: asyncpg.Pool, ids: Sequence[str], lease_s: float) -> list[Claimed]:
    """Claim the given messages if still due and not being claimed by anyone else.

    Rows locked by another dispatcher are skipped (SKIP LOCKED); rows another dispatcher
    has already claimed are no longer due and so are not selected.
    """
    if not ids:
        return []
    rows = await pool.fetch(
        """
        WITH picked AS (
            SELECT id FROM webhook_messages
            WHERE id = ANY($1::text[]) AND status = 'pending' AND next_attempt_at <= now()
            FOR UPDATE SKIP LOCKED
        )
        UPDATE webhook_messages m
        SET next_attempt_at = now() + make_interval(secs => $2),
            claim_token = m.claim_token + 1
        FROM picked, webhook_subscriptions s
        WHERE m.id = picked.id AND s.id = m.subscription_id
        RETURNING m.id, m.subscription_id, m.tenant_id, m.event_type, m.body, m.attempts,
                  m.max_attempts, m.claim_token, s.url, s.enabled, s.secret,
                  CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END
                      AS previous_secret
        """,
        list(ids),
        float(lease_s),
    )
    out = []
    for r in rows:
        secrets = (r["secret"],) + ((r["previous_secret"],) if r["previous_secret"] else ())
        out.append(
            Claimed(
                id=r["id"],
                subscription_id=str(r["subscription_id"]),
                tenant_id=str(r["tenant_id"]),
                event_type=r["event_type"],
                body=bytes(r["body"]),
                attempts=r["attempts"],
                max_attempts=r["max_attempts"],
                claim_token=r["claim_token"],
                url=r["url"],
                enabled=r["enabled"],
                secrets=secrets,
            )
        )
    return out


@dataclass(frozen=True)
class AttemptRecord:
    """One finished attempt and the message state it leads to."""

    attempt: int
    started_at: datetime
    status_code: int | None
    error_class: str | None
    latency_ms: int
    excerpt: str
    succeeded: bool
    new_status: str  # pending | succeeded | failed
    next_attempt_at: datetime | None
    last_error: str | None


async def record_attempt(pool: asyncpg.Pool, msg: Claimed, rec: AttemptRecord) -> bool:
    """Store the attempt and move the message on, fenced by the claim token.

    On success the subscription's failure run is reset in the same statement.
    Returns False when the claim was lost (another dispatcher owns the message now).
    """
    row = await pool.fetchrow(
        """
        WITH upd AS (
            UPDATE webhook_messages
            SET status = $3, attempts = $4, next_attempt_at = $5, last_status_code = $6,
                last_error = $7, updated_at = now()
            WHERE id = $1 AND claim_token = $2
            RETURNING id, subscription_id
        ), ins AS (
            INSERT INTO webhook_attempts
                (message_id, attempt, started_at, status_code, error_class, latency_ms,
                 response_excerpt, succeeded, next_retry_at)
            SELECT id, $4, $8, $6, $9, $10, $11, $12, $5 FROM upd
            RETURNING message_id
        ), reset AS (
            UPDATE webhook_subscriptions s
            SET consecutive_failures = 0, failing_since = NULL
            FROM upd
            WHERE $12 AND s.id = upd.subscription_id
              AND (s.consecutive_failures <> 0 OR s.failing_since IS NOT NULL)
            RETURNING s.id
        )
        SELECT (SELECT count(*) FROM ins) AS n
        """,
        msg.id,
        msg.claim_token,
        rec.new_status,
        rec.attempt,
        rec.next_attempt_at if rec.new_status == "pending" else None,
        rec.status_code,
        rec.last_error,
        rec.started_at,
        rec.error_class,
        rec.latency_ms,
        rec.excerpt,
        rec.succeeded,
    )
    return bool(row and row["n"])


async def finish_without_attempt(
    pool: asyncpg.Pool, msg: Claimed, status: str, reason: str
) -> bool:
    """Close a claimed message without sending (e.g. its subscription is disabled)."""
    res = await pool.execute(
        "UPDATE webhook_messages SET status = $3, next_attempt_at = NULL, last_error = $4, "
        "updated_at = now() WHERE id = $1 AND claim_token = $2",
        msg.id,
        msg.claim_token,
        status,
        reason,
    )
    return res.endswith(" 1")


async def count_failure(pool: asyncpg.Pool, subscription_id: str, at: datetime):
    """Extend the subscription's run of consecutive failures.

    Returns ``(consecutive_failures, failing_since, enabled)`` or None if it is gone.
    """
    row = await pool.fetchrow(
        "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1, "
        "failing_since = coalesce(failing_since, $2) WHERE id = $1::uuid "
        "RETURNING consecutive_failures, failing_since, enabled",
        subscription_id,
        at,
    )
    return (row["consecutive_failures"], row["failing_since"], row["enabled"]) if row else None


async def disable_subscription(pool: asyncpg.Pool, subscription_id: str, reason: str):
    """Disable if enabled; returns the row (tenant_id, url, consecutive_failures, disabled_at)
    when this call disabled it, None when it already was (so only one event is emitted)."""
    return await pool.fetchrow(
        "UPDATE webhook_subscriptions SET enabled = false, disabled_reason = $2, "
        "disabled_at = now(), updated_at = now() WHERE id = $1::uuid AND enabled "
        "RETURNING id, tenant_id, url, consecutive_failures, failing_since, disabled_at",
        subscription_id,
        reason,
    )
