"""API keys: ``afk_`` + 43 url-safe random characters, stored only as a SHA-256 hash.

A key belongs to exactly one tenant. The first 12 characters (``afk_`` + 8) are kept as a
display prefix so an operator can tell keys apart without seeing them.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

KEY_PREFIX = "afk_"
DISPLAY_PREFIX_LEN = 12


@dataclass(frozen=True)
class Tenant:
    """The caller's tenant: ``id`` is a UUID string, ``name`` is unique."""

    id: str
    name: str


def generate_key() -> str:
    """A new random API key (``afk_`` + 256 bits of url-safe base64)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Hex SHA-256 of the key; the only form stored in PostgreSQL."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def ensure_tenant(conn: Any, name: str) -> Tenant:
    """Return the tenant called ``name``, creating it if missing (race-safe)."""
    row = await conn.fetchrow(
        "INSERT INTO tenants (name) VALUES ($1) "
        "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id, name",
        name,
    )
    return Tenant(id=str(row["id"]), name=row["name"])


async def create_api_key(conn_or_pool: asyncpg.Connection | asyncpg.Pool, tenant_name: str) -> str:
    """Create a key for ``tenant_name`` (the tenant is created if missing); returns the key.

    The plain key is returned once and never stored. Raises ``ValueError`` for an empty name.
    """
    name = tenant_name.strip()
    if not name:
        raise ValueError("tenant name must not be empty")
    key = generate_key()

    async def _do(conn: Any) -> None:
        async with conn.transaction():
            tenant = await ensure_tenant(conn, name)
            await conn.execute(
                "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES ($1, $2, $3)",
                tenant.id,
                hash_key(key),
                key[:DISPLAY_PREFIX_LEN],
            )

    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            await _do(conn)
    else:
        await _do(conn_or_pool)
    return key


#: ``last_used_at`` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION_S = 60


async def tenant_for_key(conn_or_pool: Any, key: str) -> Tenant | None:
    """The tenant a (non-revoked) key belongs to, or ``None``.

    One indexed read per request; ``last_used_at`` is bumped only when it is older than
    ``LAST_USED_RESOLUTION_S`` (a write on every request would put one row update in front
    of every API call). A revoked key is refused at once: nothing is cached.
    """
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = await conn_or_pool.fetchrow(
        "SELECT k.id AS key_id, t.id, t.name,"
        " k.last_used_at IS NULL OR k.last_used_at < now() - make_interval(secs => $2)"
        " AS stale FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
        " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        hash_key(key),
        float(LAST_USED_RESOLUTION_S),
    )
    if row is None:
        return None
    if row["stale"]:
        await conn_or_pool.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1", row["key_id"]
        )
    return Tenant(id=str(row["id"]), name=row["name"])


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a key: never the key itself."""

    id: str
    tenant: str
    prefix: str
    created_at: Any  # datetime
    last_used_at: Any  # datetime | None
    revoked_at: Any  # datetime | None


async def list_api_keys(conn: Any, tenant_name: str | None = None) -> list[KeyInfo]:
    """Every key (or ``tenant_name``'s), oldest first, revoked ones included."""
    rows = await conn.fetch(
        "SELECT k.id, t.name, k.prefix, k.created_at, k.last_used_at, k.revoked_at"
        " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
        " WHERE $1::text IS NULL OR t.name = $1 ORDER BY k.created_at, k.id",
        tenant_name,
    )
    return [
        KeyInfo(
            str(r["id"]),
            r["name"],
            r["prefix"],
            r["created_at"],
            r["last_used_at"],
            r["revoked_at"],
        )
        for r in rows
    ]


async def revoke_api_key(conn: Any, ref: str) -> KeyInfo:
    """Revoke the key whose id (UUID) or display prefix (``afk_`` + 8) is ``ref``.

    Returns the key as it is now (already revoked keys keep their first revocation time).
    Raises ``LookupError`` when no key matches and ``ValueError`` when a prefix matches
    several keys (name one by id then).
    """
    ref = ref.strip()
    try:
        key_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        key_id = None
    rows = await conn.fetch("SELECT id FROM api_keys WHERE id = $1 OR prefix = $2", key_id, ref)
    if not rows:
        raise LookupError(f"no API key has the id or prefix {ref!r}")
    if len(rows) > 1:
        raise ValueError(
            f"{len(rows)} API keys have the prefix {ref!r}; revoke one by its id "
            "(arforge keys list)"
        )
    row = await conn.fetchrow(
        "UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now()) FROM tenants t"
        " WHERE k.id = $1 AND t.id = k.tenant_id"
        " RETURNING k.id, t.name, k.prefix, k.created_at, k.last_used_at, k.revoked_at",
        rows[0]["id"],
    )
    return KeyInfo(
        str(row["id"]),
        row["name"],
        row["prefix"],
        row["created_at"],
        row["last_used_at"],
        row["revoked_at"],
    )
