"""Safety net behind the MAX_DELIVERIES advisory: find dead job messages by sweeping.

The server checks max deliveries (and publishes the advisory) only when a pull request
arrives, so a job whose last delivery expired while no worker was pulling stays in the
WorkQueue stream, counted as ack-pending, forever. The sweep first *pokes* each lane with a
``no_wait`` pull limited to ``max_bytes=1``: it can never deliver a job (the server answers
409 or 404) but makes the server retire exhausted messages and publish the advisory.
Then, for a lane with nothing in flight (``num_ack_pending == 0``; a job waiting for a
delayed ``nak`` still counts as pending), every JOBS message on its subject at or below
``delivered.stream_seq`` has used up its deliveries: it goes down the same crash-loop path
as the advisory (idempotent, so racing the advisory consumer is harmless).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from nats.js.errors import APIError, NotFoundError

from arforge.shared.bus import JOBS, consumer_name, job_subject
from arforge.shared.contracts import PRIORITIES, JobSpec

from .advisories import handle_max_deliveries

log = logging.getLogger("arforge.api.tracker.sweep")


async def sweep_dead_jobs(bus: Any, pool: Any, specs: Iterable[JobSpec]) -> int:
    """Dead-letter job messages that exhausted their deliveries; returns how many."""
    handled = 0
    for spec in specs:
        for prio in PRIORITIES:
            await poke(bus, consumer_name(spec.type, prio.value))
            try:
                info = await bus.js.consumer_info(JOBS, consumer_name(spec.type, prio.value))
            except NotFoundError:
                continue
            if info.num_ack_pending or not info.delivered or not info.delivered.stream_seq:
                continue
            last = int(info.delivered.stream_seq)
            seq = 1
            while seq <= last:
                try:
                    raw = await bus.js.get_msg(
                        JOBS, seq=seq, subject=job_subject(spec.type, prio.value), next=True
                    )
                except APIError:  # 10037 / 10057: no (further) message on that subject
                    break
                if raw.seq is None or raw.seq > last:
                    break
                advisory = {
                    "stream": JOBS,
                    "stream_seq": raw.seq,
                    "deliveries": info.config.max_deliver,
                }
                outcome = await handle_max_deliveries(bus, pool, json.dumps(advisory).encode())
                log.warning("sweep found an undelivered dead job message: %s", outcome)
                handled += 1
                seq = raw.seq + 1
    return handled


async def poke(bus: Any, durable: str) -> None:
    """A pull request that cannot deliver (``max_bytes=1``) to make the server retire
    messages past ``max_deliver`` on ``durable``."""
    try:
        await bus.nc.request(
            f"$JS.API.CONSUMER.MSG.NEXT.{JOBS}.{durable}",
            json.dumps({"batch": 1, "no_wait": True, "max_bytes": 1}).encode(),
            timeout=2,
        )
    except Exception:  # the status reply is not routed to request(); nothing to read
        pass
