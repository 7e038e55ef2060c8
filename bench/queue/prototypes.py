"""A prototype of a proposed runtime change, measured by ``bench.py --prototype worker``.

Not shipped code: it reuses the real ``Worker`` and changes only the part the proposal is
about, so the bench can show what the change buys. (The batched-tracker prototype was
adopted by the real tracker and removed from here.)

* :class:`BatchPullWorker` -- the Worker pulling ``batch = free slots`` per request (never
  more messages than free slots, so no prefetch outlives ``ack_wait``) instead of one
  request round trip per job on the serial main loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import nats

from arforge.shared.bus import topology as topo
from arforge.shared.runtime import Worker


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
