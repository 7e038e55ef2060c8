"""A local webhook receiver for development and tests (aiohttp.web).

``python -m arforge.webhooks.receiver --port 9000 --secret whsec_...`` prints every
delivery it receives and whether its signature verifies. In code, ``Receiver`` records
requests and answers each path with a handler you choose (default: 200 ``ok``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from .signing import WebhookVerificationError, verify

Handler = Callable[[web.Request, "Received"], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    """One request as the receiver saw it: path, headers (lower-case names), raw body."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival


@dataclass
class Receiver:
    """Records requests on ``127.0.0.1``; ``handlers[path]`` decides each answer."""

    host: str = "127.0.0.1"
    port: int = 0
    handlers: dict[str, Handler] = field(default_factory=dict)
    default: Handler | None = None  # for paths without a handler (None: 200 "ok")
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def at(self, path: str) -> list[Received]:
        """Requests received on ``path``."""
        return [r for r in self.received if r.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec = Received(
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            at=time.monotonic(),
            wall=time.time(),
        )
        self.received.append(rec)
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()
        handler = self.handlers.get(request.path, self.default)
        if handler is None:
            return web.Response(text="ok")
        return await handler(request, rec)

    async def start(self) -> Receiver:
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, n: int, path: str | None = None, timeout: float = 10.0) -> list:
        """Wait until ``n`` requests arrived (on ``path`` if given); return them.

        Raises TimeoutError with the count seen so far.
        """
        assert self._changed is not None

        def got() -> list[Received]:
            return self.received if path is None else self.at(path)

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: len(got()) >= n)
        except TimeoutError:
            msg = f"expected {n} requests on {path or '*'}, got {len(got())}"
            raise TimeoutError(msg) from None
        return got()

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(port: int, secret: str | None) -> None:
    async def show(request: web.Request, rec: Received) -> web.Response:
        status = "unsigned"
        if secret:
            try:
                verify(rec.headers, rec.body, secret)
                status = "signature OK"
            except WebhookVerificationError as exc:
                status = f"signature FAILED ({exc})"
        print(f"{rec.headers.get('webhook-id')} {status}\n  {rec.body.decode(errors='replace')}")
        return web.Response(text="ok")

    recv = Receiver(port=port, default=show)
    await recv.start()
    print(f"listening on {recv.url}/ (Ctrl-C to stop)")
    try:
        await asyncio.Event().wait()
    finally:
        await recv.stop()


def main() -> None:
    p = argparse.ArgumentParser(description="Print (and verify) received ARForge webhooks.")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--secret", help="the subscription's whsec_ secret, to verify signatures")
    args = p.parse_args()
    try:
        asyncio.run(_serve(args.port, args.secret))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
