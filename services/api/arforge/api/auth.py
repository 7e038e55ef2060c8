"""API keys: ``afk_`` + 43 url-safe random characters, stored only as a SHA-256 hash.

A key belongs to exactly one tenant. The first 12 characters (``afk_`` + 8) are kept as a
display prefix so an operator can tell keys apart without seeing them.
"""

from __future__ import annotations

import hashlib
import secrets
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


async def tenant_for_key(conn_or_pool: Any, key: str) -> Tenant | None:
    """The tenant a (non-revoked) key belongs to, or ``None``; updates ``last_used_at``."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = await conn_or_pool.fetchrow(
        "UPDATE api_keys k SET last_used_at = now() FROM tenants t "
        "WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND t.id = k.tenant_id "
        "RETURNING t.id, t.name",
        hash_key(key),
    )
    return Tenant(id=str(row["id"]), name=row["name"]) if row else None
