"""Running a service's main coroutine: on uvloop's event loop (libuv) when installed.

uvloop replaces asyncio's pure-Python selector loop and socket transports with libuv's;
for the bus-bound services (workers, tracker, webhooks) that is where much of the CPU per
message goes. uvicorn already picks it for the API. ``ARFORGE_EVENT_LOOP=asyncio`` forces
the standard loop (e.g. to compare, or to debug with asyncio's own tooling).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def event_loop_name() -> str:
    """``"uvloop"`` when :func:`run` will use it, else ``"asyncio"``."""
    if os.environ.get("ARFORGE_EVENT_LOOP", "").lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop when available (see :func:`event_loop_name`)."""
    if event_loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
