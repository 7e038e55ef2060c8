"""``python -m arforge.api.tracker``: run the tracker until SIGINT / SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from arforge.shared.settings import get_settings

from .consumer import run_tracker


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_tracker(get_settings(), stop)


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(_main())


if __name__ == "__main__":
    main()
