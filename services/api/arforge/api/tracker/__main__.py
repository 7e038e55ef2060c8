"""``python -m arforge.api.tracker``: run the tracker until SIGINT / SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from arforge.shared.logging import configure_logging
from arforge.shared.settings import get_settings
from arforge.shared.startup import run_service

from .consumer import run_tracker


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_tracker(get_settings(), stop)


def main() -> None:
    settings = get_settings()
    configure_logging("tracker", level=settings.log_level, json=settings.log_json)
    run_service(
        "api.tracker", _main, database_url=settings.database_url, nats_url=settings.nats_url
    )


if __name__ == "__main__":
    main()
