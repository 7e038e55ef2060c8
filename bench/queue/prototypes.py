"""Prototypes of proposed runtime / tracker changes, measured by ``bench.py --prototype``.

Not shipped code: each reuses the real building blocks (``record_event``, ``Worker``) and
changes only the part a proposal is about, so the bench can show what the change buys.

* :func:`run_batched_tracker` -- the tracker writing each fetched batch of events in ONE
  transaction (one ``record_event`` savepoint per event) instead of one transaction, and so
  one WAL flush, per event.
* :class:`BatchPullWorker` -- the Worker pulling ``batch = free slots`` per request (never
  more messages than free slots, so no prefetch outlives ``ack_wait``) instead of one
  request round trip per job on the serial main loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import nats

from arforge.shared.bus import topology as topo
from arforge.shared.runtime import Worker

EVENTS_DURABLE = "tracker"
EVENTS_FILTER = "events.job.>"


async def run_batched_tracker(nats_url: str, db_url: str, stop: asyncio.Event) -> None:
    """Consume ``events.job.>`` like the tracker, one transaction per fetched batch."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from arforge.api.db import create_pool
    from arforge.api.tracker.store import record_event
    from arforge.shared.bus import EVENTS, connect
    from arforge.shared.contracts import Event

    pool = await create_pool(db_url, max_size=4)
    bus = await connect(nats_url, name="bench-batched-tracker")
    await bus.ensure_topology()
    await bus.js.add_consumer(
        EVENTS,
        ConsumerConfig(
            durable_name=EVENTS_DURABLE,
            filter_subject=EVENTS_FILTER,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
        ),
    )
    sub = await bus.js.pull_subscribe_bind(EVENTS_DURABLE, stream=EVENTS)
    print("READY", flush=True)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(64, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            failed = set()
            async with pool.acquire() as conn, conn.transaction():
                for i, msg in enumerate(msgs):
                    try:
                        ev = Event.model_validate_json(msg.data)
                    except ValueError:
                        continue  # dropped (and acked), as the tracker does
                    if not ev.type.startswith("job."):
                        continue
                    try:
                        await record_event(conn, ev)  # nested: a savepoint per event
                    except Exception as e:
                        print(f"event failed: {e!r}", file=sys.stderr)
                        failed.add(i)
            for i, msg in enumerate(msgs):
                if i in failed:
                    await msg.nak(delay=1.0)
                else:
                    await msg.ack()
    finally:
        await bus.close()
        await pool.close()


def batched_tracker_main(cfg: dict[str, Any]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await run_batched_tracker(cfg["nats_url"], cfg["db_url"], stop)

    asyncio.run(main())


class BatchPullWorker(Worker):
    """:class:`Worker` whose main loop takes every free slot and pulls that many jobs in
    one ``no_wait`` request per lane; everything per job is the real runtime."""

    async def _pull_n(self, lane: Any, n: int) -> list[Any]:
        sub = self._inboxes[lane.key]
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{topo.JOBS}.{topo.consumer_name(*lane.key)}"
        await self.bus.nc.publish(
            subject, json.dumps({"batch": n, "no_wait": True}).encode(), reply=sub.subject
        )
        out: list[Any] = []
        while len(out) < n:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except nats.errors.TimeoutError:
                break
            status = msg.headers.get("Status") if msg.headers else None
            if status is None:
                out.append(msg)
            elif status in ("404", "408", "409"):
                break
        return out

    async def _next_messages(self, n: int) -> list[tuple[Any, Any]]:
        while not self._stopping.is_set():
            got: list[tuple[Any, Any]] = []
            for lane in self.scheduler.order():
                msgs = await self._pull_n(lane, n - len(got))
                if msgs:
                    self.scheduler.served(lane)
                    got.extend((lane, m) for m in msgs)
                else:
                    self.scheduler.empty(lane)
                if len(got) >= n:
                    break
            if got:
                return got
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.idle_poll_s)
            if not self._wake.is_set():
                self.scheduler.mark_all()
        return []

    async def run(self) -> None:
        await self._setup()
        tasks: set[asyncio.Task] = set()  # type: ignore[type-arg]
        try:
            while not self._stopping.is_set():
                await self._slots.acquire()
                n = 1
                while not self._slots.locked():  # take every free slot (never blocks)
                    await self._slots.acquire()
                    n += 1
                got = await self._next_messages(n)
                for _ in range(n - len(got)):
                    self._slots.release()
                for lane, msg in got:
                    task = asyncio.create_task(self._run_job(lane, msg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            await self._drain(tasks)
        finally:
            for sub in self._subs + list(self._inboxes.values()):
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
