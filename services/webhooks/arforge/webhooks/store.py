"""PostgreSQL side of delivery: record messages, claim due ones, record attempts.

Tables (migration ``010_webhooks.sql``): ``webhook_subscriptions``, ``webhook_messages``
(one per (event, subscription), idempotent on that pair), ``webhook_attempts``.

Claiming uses a lease instead of holding row locks through the HTTP attempt:
``SELECT ... FOR UPDATE SKIP LOCKED`` picks due, unleased rows that no other dispatcher is
claiming, and the same statement sets their ``lease_until`` and bumps ``claim_token``
(a HOT update: no indexed column changes). Recording an attempt only succeeds with the
token it was claimed with, so a dispatcher whose lease ran out (stalled, then woke)
cannot overwrite a newer claim. A dispatcher that dies mid-attempt leaves the row to be
claimed again when the lease ends (at-least-once; receivers deduplicate on ``webhook-id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The dispatcher keeps no session state (no LISTEN, advisory locks, SET or cursors),
    so a connection needs no reset query (one more round trip) when returned to the pool."""


async def create_pool(dsn: str, *, max_size: int = 8) -> asyncpg.Pool:
    """The dispatcher's asyncpg pool (bytea and text[] only, no jsonb codec needed)."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, reset=_no_reset)
    assert pool is not None
    return pool


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


async def claim_due(
    pool: asyncpg.Pool,
    *,
    limit: int,
    lease_s: float,
    per_endpoint: int,
    busy: dict[str, int],
    scan: int | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due messages, oldest due first, in one statement.

    ``busy`` maps subscription id -> messages this dispatcher already holds for it; at most
    ``per_endpoint`` are held per subscription, so a slow endpoint's backlog is skipped and
    others' messages are claimed instead. ``scan`` bounds how many due rows are looked at
    (default ``4 * limit``). Rows locked by another dispatcher's claim are skipped
    (``FOR UPDATE SKIP LOCKED``); rows it already leased are not due. Each claimed row gets
    ``lease_until = now() + lease_s`` and a new ``claim_token``.
    """
    if limit <= 0:
        return []
    full = [sid for sid, n in busy.items() if n >= per_endpoint]
    part = [(sid, per_endpoint - n) for sid, n in busy.items() if 0 < n < per_endpoint]
    rows = await pool.fetch(
        """
        WITH cand AS (
            SELECT id, subscription_id, next_attempt_at FROM webhook_messages
            WHERE status = 'pending' AND next_attempt_at <= now()
              AND (lease_until IS NULL OR lease_until < now())
              AND NOT (subscription_id = ANY($3::uuid[]))
            ORDER BY next_attempt_at
            LIMIT $2
        ), ranked AS (
            SELECT c.id, c.next_attempt_at,
                   row_number() OVER (PARTITION BY c.subscription_id
                                      ORDER BY c.next_attempt_at) AS rn,
                   coalesce(room.n, $6) AS room
            FROM cand c
            LEFT JOIN unnest($4::uuid[], $5::int[]) AS room(sid, n)
                   ON room.sid = c.subscription_id
        ), chosen AS (
            SELECT id FROM ranked WHERE rn <= room ORDER BY next_attempt_at LIMIT $1
        ), picked AS (
            SELECT m.id FROM webhook_messages m JOIN chosen ON chosen.id = m.id
            WHERE m.status = 'pending' AND m.next_attempt_at <= now()
              AND (m.lease_until IS NULL OR m.lease_until < now())
            FOR UPDATE OF m SKIP LOCKED
        )
        UPDATE webhook_messages m
        SET lease_until = now() + make_interval(secs => $7),
            claim_token = m.claim_token + 1
        FROM picked, webhook_subscriptions s
        WHERE m.id = picked.id AND s.id = m.subscription_id
        RETURNING m.id, m.subscription_id, m.tenant_id, m.event_type, m.body, m.attempts,
                  m.max_attempts, m.claim_token, m.next_attempt_at, s.url, s.enabled, s.secret,
                  CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END
                      AS previous_secret
        """,
        limit,
        scan or 4 * limit,
        full,
        [sid for sid, _ in part],
        [n for _, n in part],
        per_endpoint,
        float(lease_s),
    )
    rows = sorted(rows, key=lambda r: r["next_attempt_at"])
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


async def record_attempts(
    pool: asyncpg.Pool, batch: Sequence[tuple[Claimed, AttemptRecord]]
) -> set[str]:
    """Store finished attempts and move their messages on, in one statement.

    Each row is fenced by its claim token; returns the ids whose claim still held (a
    missing id means another dispatcher owns that message now and nothing was written
    for it). Subscriptions with a successful attempt get their failure run reset.
    """
    if not batch:
        return set()
    cols: list[list] = [[] for _ in range(12)]
    for msg, rec in batch:
        pending = rec.new_status == "pending"
        for i, v in enumerate(
            (
                msg.id,
                msg.claim_token,
                rec.new_status,
                rec.attempt,
                rec.next_attempt_at if pending else None,
                rec.status_code,
                rec.last_error,
                rec.started_at,
                rec.error_class,
                rec.latency_ms,
                rec.excerpt,
                rec.succeeded,
            )
        ):
            cols[i].append(v)
    rows = await pool.fetch(
        """
        WITH r AS (
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[],
                                 $5::timestamptz[], $6::int[], $7::text[], $8::timestamptz[],
                                 $9::text[], $10::int[], $11::text[], $12::bool[])
                AS r(id, token, status, attempt, next_at, status_code, last_error,
                     started_at, error_class, latency_ms, excerpt, succeeded)
        ), upd AS (
            UPDATE webhook_messages m
            SET status = r.status, attempts = r.attempt, next_attempt_at = r.next_at,
                lease_until = NULL, last_status_code = r.status_code,
                last_error = r.last_error, updated_at = now()
            FROM r
            WHERE m.id = r.id AND m.claim_token = r.token
            RETURNING m.id, m.subscription_id
        ), ins AS (
            INSERT INTO webhook_attempts
                (message_id, attempt, started_at, status_code, error_class, latency_ms,
                 response_excerpt, succeeded, next_retry_at)
            SELECT r.id, r.attempt, r.started_at, r.status_code, r.error_class, r.latency_ms,
                   r.excerpt, r.succeeded, r.next_at
            FROM r JOIN upd ON upd.id = r.id
            RETURNING message_id
        ), reset AS (
            UPDATE webhook_subscriptions s
            SET consecutive_failures = 0, failing_since = NULL
            FROM (SELECT DISTINCT upd.subscription_id FROM upd JOIN r ON r.id = upd.id
                  WHERE r.succeeded) ok
            WHERE s.id = ok.subscription_id
              AND (s.consecutive_failures <> 0 OR s.failing_since IS NOT NULL)
            RETURNING s.id
        )
        SELECT message_id FROM ins
        """,
        *cols,
    )
    return {r["message_id"] for r in rows}


async def release_claims(pool: asyncpg.Pool, claims: Sequence[Claimed]) -> None:
    """Give claimed-but-unstarted messages back (lease cleared) so others can take them."""
    if claims:
        await pool.execute(
            "UPDATE webhook_messages m SET lease_until = NULL FROM "
            "unnest($1::text[], $2::bigint[]) AS c(id, token) "
            "WHERE m.id = c.id AND m.claim_token = c.token",
            [c.id for c in claims],
            [c.claim_token for c in claims],
        )


async def finish_without_attempt(
    pool: asyncpg.Pool, msg: Claimed, status: str, reason: str
) -> bool:
    """Close a claimed message without sending (e.g. its subscription is disabled)."""
    res = await pool.execute(
        "UPDATE webhook_messages SET status = $3, next_attempt_at = NULL, lease_until = NULL, "
        "last_error = $4, updated_at = now() WHERE id = $1 AND claim_token = $2",
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
