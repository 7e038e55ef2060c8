"""The FastAPI application factory.

``create_app(settings)`` builds the app; its lifespan applies the SQL migrations, opens the
asyncpg pool, makes the object store (``arforge.shared.storage.factory.make_store``),
connects to NATS and ensures the JetStream topology, and puts them on ``app.state``
(see :mod:`arforge.api.deps`); it also runs the republisher (:mod:`arforge.api.outbox`)
until shutdown. Routers: jobs, dead letters, health / metrics and, when that
module is present, uploads.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from arforge.shared.contracts import Registry
from arforge.shared.settings import Settings

from . import outbox
from .db import create_pool, migrate
from .errors import install_error_handlers

log = logging.getLogger("arforge.api")

API_DESCRIPTION = """
Capture-to-AR processing: upload a walk-around video or photos, submit a job
(photogrammetry, splatting, ai-vision, ai-generation, mesh), follow its events, download
its artifacts. Every request needs `Authorization: Bearer afk_...`; every error is
`{"error": {"code": "...", "message": "..."}}`.
"""


def _optional_router(module: str) -> Any | None:
    """``module.router`` if the module can be imported (routes owned by other helpers)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, "router", None)


def _make_store(settings: Settings) -> Any | None:
    try:
        factory = importlib.import_module("arforge.shared.storage.factory")
    except ModuleNotFoundError:
        log.warning("arforge.shared.storage.factory is missing: no object store configured")
        return None
    return factory.make_store(settings)


def create_app(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    republish_every_s: float = outbox.DEFAULT_EVERY_S,
    republish_after_s: float = outbox.DEFAULT_AFTER_S,
) -> FastAPI:
    """The API app for ``settings`` (default: from the environment).

    ``registry`` defaults to the seed registry with ``settings.policies`` applied.
    ``republish_every_s`` / ``republish_after_s``: how often the republisher
    (:mod:`arforge.api.outbox`) runs and how old an unconfirmed queued run must be.
    """
    from arforge.shared.settings import get_settings

    settings = settings or get_settings()
    registry = registry or Registry().with_overrides(settings.policies)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from arforge.shared.bus import connect

        async with AsyncExitStack() as stack:
            await migrate(settings.database_url)
            pool = await create_pool(settings.database_url)
            stack.push_async_callback(pool.close)
            store = _make_store(settings)
            if store is not None:
                stack.push_async_callback(store.close)
            bus = await connect(settings.nats_url, name="arforge-api")
            stack.push_async_callback(bus.close)
            await bus.ensure_topology(registry)
            app.state.pool = pool
            app.state.store = store
            app.state.bus = bus
            stop = asyncio.Event()
            marks = outbox.PublishedMarks(pool)
            app.state.marks = marks
            marker = asyncio.create_task(marks.run(stop), name="arforge-api-published-marks")
            republisher = asyncio.create_task(
                outbox.run_republisher(
                    pool, bus, stop, every_s=republish_every_s, after_s=republish_after_s
                ),
                name="arforge-api-republisher",
            )

            async def _stop_republisher() -> None:
                stop.set()
                await republisher
                await marker

            stack.push_async_callback(_stop_republisher)
            yield
            app.state.pool = app.state.store = app.state.bus = app.state.marks = None

    app = FastAPI(
        title="ARForge API",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.pool = app.state.store = app.state.bus = app.state.marks = None
    install_error_handlers(app)

    from .routes import dead_letters, health, jobs

    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(dead_letters.router)
    # Routers owned by other services' authors, included when present.
    for module in ("arforge.api.routes.uploads", "arforge.api.routes.webhooks"):
        router = _optional_router(module)
        if router is not None:
            app.include_router(router)
    return app
