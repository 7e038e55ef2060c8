"""``python -m arforge.api``: serve the API with uvicorn on ARFORGE_API_HOST:ARFORGE_API_PORT."""

from __future__ import annotations

import logging

import uvicorn

from arforge.shared.settings import Settings, get_settings
from arforge.shared.startup import run_service

from .app import create_app


async def _preflight(settings: Settings) -> None:
    """Reach PostgreSQL and NATS once, so an unusable one is a sentence, not uvicorn's
    lifespan traceback."""
    import asyncpg

    from arforge.shared.bus import connect

    conn = await asyncpg.connect(settings.database_url, timeout=10)
    await conn.close()
    bus = await connect(settings.nats_url, name="arforge-api-preflight")
    await bus.close()


def main() -> None:
    settings = get_settings()
    run_service(
        "api",
        lambda: _preflight(settings),
        database_url=settings.database_url,
        nats_url=settings.nats_url,
    )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
