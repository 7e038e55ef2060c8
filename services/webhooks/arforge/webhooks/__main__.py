"""``python -m arforge.webhooks``: run one webhook dispatcher process.

Start as many as needed; they share the durable consumer ``webhooks`` and split due
deliveries through PostgreSQL. Needs the API's migrations applied (table
``webhook_messages``). Stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from arforge.shared.bus import connect
from arforge.shared.settings import get_settings
from arforge.shared.startup import run_service

from .dispatcher import Dispatcher
from .settings import WebhookSettings
from .store import create_pool

log = structlog.get_logger("arforge.webhooks")


async def main() -> int:
    shared = get_settings()
    settings = WebhookSettings()
    pool = await create_pool(shared.database_url, max_size=settings.db_pool_size)
    try:
        if await pool.fetchval("SELECT to_regclass('webhook_messages')") is None:
            print(
                "arforge.webhooks: table webhook_messages is missing in "
                f"{shared.database_url}; apply the API migrations first (start the API).",
                file=sys.stderr,
            )
            return 2
        bus = await connect(shared.nats_url, name="arforge-webhooks")
        try:
            await bus.ensure_topology()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            log.info(
                "webhook dispatcher started",
                concurrency=settings.concurrency,
                allow_private_targets=settings.allow_private_targets,
            )
            await Dispatcher(pool, settings, bus=bus).run(stop)
        finally:
            await bus.close()
    finally:
        await pool.close()
    return 0


if __name__ == "__main__":
    _s = get_settings()
    sys.exit(run_service("webhooks", main, database_url=_s.database_url, nats_url=_s.nats_url))
