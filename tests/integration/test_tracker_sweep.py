"""The sweep finds a job message whose deliveries ran out with no pull waiting (so the
server never published a MAX_DELIVERIES advisory) and dead-letters it as a crash loop."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_tracker import stack, wait_for  # noqa: F401  (fixture)

from arforge.api.testing import insert_upload, new_tenant_key
from arforge.api.tracker.sweep import sweep_dead_jobs
from arforge.shared.contracts import Registry


async def test_sweep_dead_letters_a_silently_exhausted_job(stack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    app, client = stack
    bus = app.state.bus
    reg = Registry().with_overrides({"ai-vision": {"delays_s": []}})
    await bus.ensure_topology([reg["ai-vision"]], ack_wait_s=1.0)
    h = await new_tenant_key(app)
    up = await insert_upload(app, h, kind="image")
    job = (
        await client.post(
            "/v1/jobs",
            json={"type": "ai-vision", "inputs": [up], "params": {"prompt": "hi"}},
            headers=h,
        )
    ).json()
    # nothing to sweep while the message is queued
    assert await sweep_dead_jobs(bus, app.state.pool, [reg["ai-vision"]]) == 0

    sub = await bus.js.pull_subscribe_bind("ai-vision-default", stream="JOBS")
    deliveries = 0
    deadline = time.monotonic() + 20
    while deliveries < 3 and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            deliveries += len(await sub.fetch(1, timeout=2))
    await sub.unsubscribe()  # no pull waits afterwards: the advisory never comes
    assert deliveries == 3
    # while the last delivery is still in flight the sweep must leave it alone
    assert await sweep_dead_jobs(bus, app.state.pool, [reg["ai-vision"]]) == 0
    await asyncio.sleep(1.5)  # the last ack_wait expires
    assert (await bus.js.stream_info("JOBS")).state.messages == 1

    assert await sweep_dead_jobs(bus, app.state.pool, [reg["ai-vision"]]) == 1

    async def dead() -> dict | None:
        got = (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()
        return got if got["dead_lettered"] and got["status"] == "failed" else None

    got = await wait_for(dead, timeout=30)
    assert got["error"]["code"] == "crash_loop"
    assert (await bus.js.stream_info("JOBS")).state.messages == 0
    assert (await bus.js.stream_info("DLQ")).state.messages == 1
