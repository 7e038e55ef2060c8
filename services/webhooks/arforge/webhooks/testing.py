"""Helpers for tests of webhook delivery against real PostgreSQL (no mocks).

``fast_settings(**overrides)`` gives fast settings (tiny retry schedule, private targets
allowed for 127.0.0.1 receivers); ``running_dispatcher`` runs a Dispatcher in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from .dispatcher import Dispatcher
from .settings import WebhookSettings
from .signing import generate_secret


def fast_settings(**overrides: Any) -> WebhookSettings:
    """Settings for tests: 127.0.0.1 allowed, 3 attempts 0.3 s / 0.6 s apart, no jitter."""
    base: dict[str, Any] = {
        "allow_private_targets": True,
        "attempt_timeout_s": 3.0,
        "backoff_initial_s": 0.3,
        "backoff_multiplier": 2.0,
        "jitter": 0.0,
        "poll_interval_s": 0.1,
    }
    base.update(overrides)
    return WebhookSettings(**base)


async def make_tenant(pool: asyncpg.Pool, name: str) -> str:
    """Insert (or find) a tenant; returns its id."""
    return str(
        await pool.fetchval(
            "INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) "
            "DO UPDATE SET name = EXCLUDED.name RETURNING id",
            name,
        )
    )


async def make_subscription(
    pool: asyncpg.Pool,
    tenant_id: str,
    url: str,
    event_types: list[str],
    *,
    secret: str | None = None,
    enabled: bool = True,
) -> tuple[str, str]:
    """Insert a subscription; returns ``(id, secret)``."""
    secret = secret or generate_secret()
    sid = await pool.fetchval(
        "INSERT INTO webhook_subscriptions (tenant_id, url, event_types, secret, enabled) "
        "VALUES ($1::uuid, $2, $3, $4, $5) RETURNING id",
        tenant_id,
        url,
        event_types,
        secret,
        enabled,
    )
    return str(sid), secret


@asynccontextmanager
async def running_dispatcher(
    pool: asyncpg.Pool, settings: WebhookSettings, *, bus: Any = None
) -> AsyncIterator[Dispatcher]:
    """A Dispatcher running in this event loop until the block exits."""
    d = Dispatcher(pool, settings, bus=bus)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        yield d
    finally:
        stop.set()
        await asyncio.wait_for(task, settings.attempt_timeout_s + 15)
