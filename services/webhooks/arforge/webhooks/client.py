"""One webhook delivery attempt over HTTP, bounded in time and in what it reads.

The whole attempt (DNS + connect + send + status line + headers + excerpt read) runs
under ONE deadline (``asyncio.timeout``), so an endpoint that drips a byte every half
second cannot hold it longer. At most ``excerpt_bytes`` of the response body are read;
a response not read to the end has its connection closed, never drained. Redirects are
not followed (3xx is a failure). Connections go only to addresses the SSRF policy
allowed (see ``ssrf.GuardedResolver``); address literals are checked before the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import aiohttp
from aiohttp.abc import AbstractResolver

from .ssrf import BlockedTarget, GuardedResolver, check_url


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt produced.

    ``status_code``: HTTP status when a response head arrived, else None.
    ``error_class``: None on a 2xx; otherwise a short word: ``http_status`` (non-2xx, non-3xx),
    ``redirect`` (3xx), ``timeout``, ``connect_error``, ``blocked_target``, ``invalid_url``,
    ``protocol_error``. ``latency_ms``: wall time of the attempt. ``excerpt``: first bytes
    of the response body decoded as UTF-8 with replacement. ``retry_after_s``: a parsed
    ``Retry-After`` header in seconds (uncapped), if any.
    """

    status_code: int | None
    error_class: str | None
    latency_ms: int
    excerpt: str = ""
    retry_after_s: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error_class is None

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    Returns None when absent or unparseable; never negative.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


@lru_cache(maxsize=4096)
def _url_verdict(url: str, allow_private: bool) -> BlockedTarget | None:
    """``check_url`` memoised (a URL's form does not change; names are still resolved and
    checked on every connection by the guarded resolver)."""
    try:
        check_url(url, allow_private=allow_private)
    except BlockedTarget as exc:
        return exc
    return None


class DeliveryClient:
    """A shared aiohttp session for webhook attempts (keep-alive, guarded resolver).

    ``limit``: most open connections overall. ``dns``: the resolver names go through
    before the guard checks them (default: the system's). Use as an async context manager or call
    ``close()``.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        timeout_s: float = 15.0,
        excerpt_bytes: int = 1024,
        user_agent: str = "ARForge-Webhooks/0.1",
        limit: int = 100,
        dns: AbstractResolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.excerpt_bytes = excerpt_bytes
        self.user_agent = user_agent
        self._limit = limit
        self._dns = dns  # name resolution under the guard (default: the system resolver)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=0,
                enable_cleanup_closed=False,
                resolver=GuardedResolver(allow_private=self.allow_private, inner=self._dns),
                use_dns_cache=False,  # every connection resolves and checks afresh
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
                trust_env=False,  # never route through an environment proxy
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DeliveryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def attempt(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptOutcome:
        """POST ``body`` (exact bytes) with ``headers`` to ``url``; never raises for I/O.

        2xx is success; everything else, including 3xx and a timeout, is a failure.
        """
        start = time.monotonic()

        def done(
            status: int | None, error: str | None, excerpt: str = "", ra=None, detail=""
        ) -> AttemptOutcome:
            return AttemptOutcome(
                status_code=status,
                error_class=error,
                latency_ms=int((time.monotonic() - start) * 1000),
                excerpt=excerpt,
                retry_after_s=ra,
                detail=detail[:500],
            )

        blocked = _url_verdict(url, self.allow_private)
        if blocked is not None:
            cls = "invalid_url" if blocked.reason == "invalid_url" else "blocked_target"
            return done(None, cls, detail=blocked.message)

        send_headers = {
            "content-type": "application/json",
            "user-agent": self.user_agent,
            "accept-encoding": "identity",
            **headers,
        }
        status: int | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                resp = await self._get_session().post(
                    url, data=body, headers=send_headers, allow_redirects=False
                )
                try:
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("retry-after"))
                    buf = bytearray()
                    while len(buf) < self.excerpt_bytes:
                        chunk = await resp.content.read(self.excerpt_bytes - len(buf))
                        if not chunk:
                            break
                        buf += chunk
                finally:
                    if status is None or not resp.content.at_eof():
                        resp.close()  # drop the connection; never drain a large body
                    else:
                        resp.release()
        except TimeoutError:
            return done(status, "timeout", detail=f"attempt exceeded {self.timeout_s} s")
        except BlockedTarget as exc:
            return done(None, "blocked_target", detail=exc.message)
        except aiohttp.InvalidURL as exc:
            return done(None, "invalid_url", detail=str(exc))
        except (aiohttp.ClientConnectorError, ConnectionError) as exc:
            return done(None, "connect_error", detail=str(exc))
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return done(status, "protocol_error", detail=f"{type(exc).__name__}: {exc}")
        excerpt = bytes(buf).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        if 200 <= status < 300:
            return done(status, None, excerpt)
        if 300 <= status < 400:
            loc = resp.headers.get("location", "")
            return done(status, "redirect", excerpt, retry_after, detail=f"location: {loc}")
        return done(status, "http_status", excerpt, retry_after)
