"""Helpers for tests of the API against real services (no mocks).

``running_api(settings)`` runs the app's lifespan (migrations, pool, store, NATS) and
yields an ``httpx.AsyncClient`` talking to it in-process over ASGI.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from arforge.shared.contracts import Registry
from arforge.shared.settings import Settings, StorageSettings

from .app import create_app
from .auth import create_api_key


def api_settings(nats_url: str, database_url: str, storage_root: Path) -> Settings:
    """Settings for a private NATS server, database and local storage root."""
    return Settings(
        nats_url=nats_url,
        database_url=database_url,
        storage=StorageSettings(backend="local", root=storage_root),
    )


def all_implemented(registry: Registry | None = None) -> Registry:
    """A copy of ``registry`` (default: the seed registry) with every type marked
    implemented, so tests can submit light types (``mesh``, ``ai-vision``) whose worker
    does not exist yet; the tests play the worker themselves."""
    base = registry or Registry()
    return Registry([dataclasses.replace(s, implemented=True) for s in base])


@asynccontextmanager
async def running_api(
    settings: Settings, **app_kwargs: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """``(app, client)`` with the lifespan running; the client's base URL is ``http://api``."""
    app = create_app(settings, **app_kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield app, client


async def new_tenant_key(app: FastAPI, name: str | None = None) -> dict[str, str]:
    """Create a tenant + key; returns request headers ``{"Authorization": "Bearer ..."}``."""
    key = await create_api_key(app.state.pool, name or f"tenant-{uuid.uuid4().hex[:8]}")
    return {"Authorization": f"Bearer {key}"}


async def insert_upload(
    app: FastAPI, headers: dict[str, str], *, kind: str = "video", size: int = 1000
) -> str:
    """Insert an ``uploads`` row for the tenant of ``headers`` and store ``size`` zero
    bytes under its key (placeholder content: the API only checks the object exists)."""
    from .auth import tenant_for_key

    tenant = await tenant_for_key(app.state.pool, headers["Authorization"].split(" ", 1)[1])
    assert tenant is not None
    uid = uuid.uuid4()
    ext = {"video": "mp4", "image": "jpg", "glb": "glb"}.get(kind, "bin")
    await app.state.pool.execute(
        "INSERT INTO uploads (id, tenant_id, key, kind, content_type, size, filename)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        uid,
        tenant.id,
        f"uploads/{uid}/source.{ext}",
        kind,
        {"video": "video/mp4", "image": "image/jpeg"}.get(kind, "application/octet-stream"),
        size,
        f"source.{ext}",
    )
    if app.state.store is not None:
        ctype = {"video": "video/mp4", "image": "image/jpeg"}.get(kind, "application/octet-stream")
        key = f"uploads/{uid}/source.{ext}"
        await app.state.store.put_bytes(key, b"\0" * size, content_type=ctype)
    return str(uid)
