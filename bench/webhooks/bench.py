"""Webhook delivery throughput: the dispatcher vs a bare aiohttp POST loop, same run.

    .venv/bin/python bench/webhooks/bench.py [--n 5000] [--concurrency 50]

A receiver (aiohttp.web, 200 "ok") runs in its own process on 127.0.0.1. Two clients hit it
at the same concurrency:
* bare: an aiohttp session POSTing the same body N times (the ceiling: no signing, no DB);
* dispatcher: N messages recorded in PostgreSQL, then the scheduler claims them
  (FOR UPDATE SKIP LOCKED), signs each (Standard Webhooks), POSTs, and records the attempt
  and the message state, exactly as in production.
Prints deliveries/s, p50/p99 latency per request, and the ratio. PostgreSQL: a throwaway
database on ``ARFORGE_TEST_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres).
Target (issue 4): >= 500 deliveries/s and >= 50 % of the bare loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid

import aiohttp
import asyncpg

from arforge.webhooks import store
from arforge.webhooks.dispatcher import Dispatcher
from arforge.webhooks.public import encode_body, message_id
from arforge.webhooks.testing import fast_settings, make_subscription, make_tenant

RECEIVER = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/hook", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

PG_ADMIN = os.environ.get("ARFORGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("receiver did not start")


async def bare(url: str, body: bytes, n: int, conc: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    left = n
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                async with s.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as r:
                    await r.read()
                    assert r.status == 200
                lat.append((time.perf_counter() - t) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return time.perf_counter() - t0, lat


async def dispatched(dsn: str, url: str, body: bytes, n: int, conc: int):
    pool = await store.create_pool(dsn, max_size=10)
    try:
        tenant = await make_tenant(pool, "bench")
        sid, _ = await make_subscription(pool, tenant, url, ["*"])
        ev = [str(uuid.uuid4()) for _ in range(n)]
        msgs = [
            store.NewMessage(message_id(e, sid), e, sid, tenant, "webhook.test", body, 3)
            for e in ev
        ]
        for i in range(0, n, 1000):
            await store.insert_messages(pool, msgs[i : i + 1000])
        settings = fast_settings(
            concurrency=conc, per_endpoint_concurrency=conc, poll_interval_s=0.05
        )
        d = Dispatcher(pool, settings)
        stop = asyncio.Event()
        t0 = time.perf_counter()
        task = asyncio.create_task(d.run_scheduler(stop))
        while True:
            left = await pool.fetchval(
                "SELECT count(*) FROM webhook_messages WHERE status = 'pending'"
            )
            if left == 0:
                break
            await asyncio.sleep(0.02)
        took = time.perf_counter() - t0
        stop.set()
        await task
        await d.client.close()
        ok = await pool.fetchval("SELECT count(*) FROM webhook_messages WHERE status='succeeded'")
        lat = [
            float(r["latency_ms"])
            for r in await pool.fetch("SELECT latency_ms FROM webhook_attempts")
        ]
        assert ok == n, f"only {ok}/{n} succeeded"
        return took, lat
    finally:
        await pool.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=50)
    args = ap.parse_args()
    from arforge.api.db import migrate

    port = _free_port()
    recv = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])  # noqa: ASYNC220
    name = f"arforge_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        await wait_port(port)
        await migrate(dsn)
        url = f"http://127.0.0.1:{port}/hook"
        body = encode_body(
            {"type": "webhook.test", "timestamp": "2025-01-01T00:00:00Z", "data": {"x": "y" * 300}}
        )
        await bare(url, body, 500, args.concurrency)  # warm-up
        b_t, b_lat = await bare(url, body, args.n, args.concurrency)
        d_t, d_lat = await dispatched(dsn, url, body, args.n, args.concurrency)
    finally:
        recv.terminate()
        recv.wait()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    b_rate, d_rate = args.n / b_t, args.n / d_t
    print(f"n={args.n} concurrency={args.concurrency} body={len(body)} B")
    print(
        f"bare aiohttp POST : {b_rate:8.0f} req/s   p50 {statistics.median(b_lat):6.1f} ms"
        f"   p99 {pct(b_lat, 99):6.1f} ms"
    )
    print(
        f"dispatcher        : {d_rate:8.0f} del/s   p50 {statistics.median(d_lat):6.1f} ms"
        f"   p99 {pct(d_lat, 99):6.1f} ms   (signed, claimed + recorded in PostgreSQL)"
    )
    print(f"ratio dispatcher/bare: {d_rate / b_rate:.0%}   (target >= 500/s and >= 50%)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    asyncio.run(main())
