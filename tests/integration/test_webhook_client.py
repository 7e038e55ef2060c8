"""One delivery attempt against real local HTTP endpoints on 127.0.0.1.

Slow-drip and silent endpoints are cut off by the whole-attempt timeout, a 200 MB answer
is not read, redirects are not followed, and the SSRF guard blocks loopback when private
targets are not allowed.
"""

from __future__ import annotations

import asyncio
import time

import psutil
import pytest
from aiohttp import web

from arforge.webhooks.client import DeliveryClient
from arforge.webhooks.receiver import Receiver
from tests.conftest import free_port

BODY = b'{"type":"webhook.test","data":{}}'


async def _raw_server(handler) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _drip(data: bytes, reader, writer) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.5)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",  # drips the status line
        None,  # head at once, then the body drips
    ],
    ids=["drip-head", "drip-body"],
)
async def test_slow_drip_is_bounded_by_whole_attempt_timeout(response: bytes | None) -> None:
    async def handler(reader, writer):
        if response is None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            await writer.drain()
            await _drip(b"x" * 100, reader, writer)
        else:
            await _drip(response, reader, writer)

    server, port = await _raw_server(handler)
    async with server, DeliveryClient(allow_private=True, timeout_s=1.5) as client:
        t0 = time.monotonic()
        out = await client.attempt(f"http://127.0.0.1:{port}/", BODY, {})
        took = time.monotonic() - t0
    assert out.error_class == "timeout"
    assert not out.ok
    assert 1.4 <= took < 2.5, took


async def test_never_answering_endpoint_times_out() -> None:
    accepted = asyncio.Event()

    async def handler(reader, writer):
        accepted.set()
        await asyncio.sleep(30)

    server, port = await _raw_server(handler)
    async with server, DeliveryClient(allow_private=True, timeout_s=1.0) as client:
        t0 = time.monotonic()
        out = await client.attempt(f"http://127.0.0.1:{port}/", BODY, {})
        took = time.monotonic() - t0
    assert accepted.is_set()
    assert out.error_class == "timeout" and out.status_code is None
    assert took < 2.0


async def test_huge_response_is_not_read() -> None:
    size = 200 * 1024 * 1024
    sent = 0

    async def big(request: web.Request, rec) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(status=200, headers={"Content-Length": str(size)})
        await resp.prepare(request)
        chunk = b"A" * (1024 * 1024)
        try:
            while sent < size:
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    proc = psutil.Process()
    async with (
        Receiver(handlers={"/big": big}) as recv,
        DeliveryClient(allow_private=True, timeout_s=20, excerpt_bytes=1024) as client,
    ):
        await client.attempt(f"{recv.url}/warm", BODY, {})  # warm imports and pools
        before = proc.memory_info().rss
        t0 = time.monotonic()
        out = await client.attempt(f"{recv.url}/big", BODY, {})
        took = time.monotonic() - t0
        after = proc.memory_info().rss
    assert out.ok and out.status_code == 200
    assert out.excerpt == "A" * 1024
    assert after - before < 20 * 1024 * 1024, (before, after)
    assert sent < size  # the client hung up long before the end
    assert took < 5


async def test_redirect_is_a_failure_and_not_followed() -> None:
    async def redirect(request, rec):
        raise web.HTTPFound("/elsewhere")

    async with Receiver(handlers={"/hook": redirect}) as recv:
        async with DeliveryClient(allow_private=True) as client:
            out = await client.attempt(f"{recv.url}/hook", BODY, {})
        await asyncio.sleep(0.2)
        assert [r.path for r in recv.received] == ["/hook"]
    assert out.status_code == 302 and out.error_class == "redirect"
    assert "elsewhere" in out.detail


async def test_status_codes_excerpt_cap_and_retry_after() -> None:
    async def busy(request, rec):
        return web.Response(status=503, text="x" * 5000, headers={"Retry-After": "7"})

    async def gone(request, rec):
        return web.Response(status=410, text="bye")

    async with Receiver(handlers={"/busy": busy, "/gone": gone}) as recv:
        async with DeliveryClient(allow_private=True, excerpt_bytes=100) as client:
            ok = await client.attempt(f"{recv.url}/ok", BODY, {"webhook-id": "msg_1"})
            b = await client.attempt(f"{recv.url}/busy", BODY, {})
            g = await client.attempt(f"{recv.url}/gone", BODY, {})
        first = recv.received[0]
    assert ok.ok and ok.excerpt == "ok" and ok.latency_ms >= 0
    assert first.body == BODY  # exact bytes
    assert first.headers["webhook-id"] == "msg_1"
    assert first.headers["content-type"] == "application/json"
    assert b.error_class == "http_status" and b.status_code == 503
    assert b.retry_after_s == 7 and len(b.excerpt) == 100
    assert g.gone and not g.ok


async def test_ssrf_guard_blocks_loopback_when_not_allowed() -> None:
    async with Receiver() as recv:
        urls = [
            f"{recv.url}/hook",
            f"http://localhost:{recv.port}/hook",
            f"http://2130706433:{recv.port}/hook",
            f"http://0x7f.1:{recv.port}/hook",
            f"http://017700000001:{recv.port}/hook",
            f"http://[::ffff:127.0.0.1]:{recv.port}/hook",
            f"http://169.254.169.254:{recv.port}/latest",
        ]
        async with DeliveryClient(allow_private=False, timeout_s=3) as client:
            outs = [await client.attempt(u, BODY, {}) for u in urls]
        # with the development setting on, the same receiver is reachable
        async with DeliveryClient(allow_private=True) as client:
            allowed = await client.attempt(f"http://localhost:{recv.port}/hook", BODY, {})
        received = len(recv.received)
    for u, o in zip(urls, outs, strict=True):
        assert o.error_class == "blocked_target", (u, o)
    assert allowed.ok
    assert received == 1  # only the allowed attempt arrived


async def test_connect_error() -> None:
    async with DeliveryClient(allow_private=True, timeout_s=3) as client:
        out = await client.attempt(f"http://127.0.0.1:{free_port()}/", BODY, {})
    assert out.error_class == "connect_error"


class _ScriptedDNS:
    """A DNS server stand-in whose answers change per query (DNS rebinding)."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.queries = 0

    async def resolve(self, host: str, port: int = 0, family=0):
        import socket

        addr = self.answers[min(self.queries, len(self.answers) - 1)]
        self.queries += 1
        return [
            {
                "hostname": host,
                "host": addr,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


async def test_dns_rebinding_is_checked_on_every_connection() -> None:
    async with Receiver() as recv:
        # Allowed (development setting): the name resolves to the checked 127.0.0.1 and the
        # connection goes exactly there, with the original Host header.
        dns = _ScriptedDNS(["127.0.0.1"])
        async with DeliveryClient(allow_private=True, dns=dns) as client:  # type: ignore[arg-type]
            ok = await client.attempt(f"http://hook.example:{recv.port}/a", BODY, {})
        assert ok.ok and recv.received[0].headers["host"].startswith("hook.example")
        # Guard on: each connection resolves afresh and every answer is checked; a name that
        # answers a reserved address, then loopback, is refused both times before connecting.
        dns = _ScriptedDNS(["192.0.2.1", "127.0.0.1"])  # 192.0.2.1: TEST-NET, not global
        async with DeliveryClient(allow_private=False, dns=dns, timeout_s=2) as client:  # type: ignore[arg-type]
            a = await client.attempt(f"http://rebind.example:{recv.port}/b", BODY, {})
            b = await client.attempt(f"http://rebind.example:{recv.port}/b", BODY, {})
        assert a.error_class == "blocked_target" and b.error_class == "blocked_target"
        assert dns.queries == 2
        assert recv.at("/b") == []
