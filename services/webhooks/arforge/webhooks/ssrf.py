"""SSRF policy for webhook targets: which addresses a delivery may connect to.

Two layers, both here:
* ``check_url(url)`` rejects at subscription time a URL that is malformed or whose host is
  an address literal in any spelling (dotted, decimal ``2130706433``, octal
  ``017700000001``, hex ``0x7f.1``, IPv6 incl. IPv4-mapped/NAT64/6to4) of a blocked address.
* ``GuardedResolver`` is an aiohttp resolver: it resolves the name, checks EVERY returned
  address and hands aiohttp only checked addresses to connect to, so a DNS answer that
  changes between check and connect (rebinding) cannot slip through.

Blocked: loopback, RFC 1918 private, link-local (incl. metadata 169.254.169.254),
CGNAT 100.64/10, unique-local fc00::/7 (incl. metadata fd00:ec2::254), multicast,
unspecified, reserved/documentation/benchmarking ranges (anything not ``is_global``), and
IPv6 forms embedding a blocked IPv4 (``::ffff:a.b.c.d``, ``::a.b.c.d``,
``64:ff9b::/96`` NAT64, ``2002::/16`` 6to4, Teredo). ``allow_private=True`` (development
only) permits all of these except metadata, multicast and unspecified addresses.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_V4_COMPAT = ipaddress.ip_network("::/96")
_SPACE = re.compile(r"\s")


class BlockedTarget(Exception):
    """A webhook URL or resolved address is not allowed; ``reason`` is a short word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse ``host`` the way inet_aton does (1-4 parts, each decimal, 0-octal or 0x-hex).

    ``"2130706433"``, ``"0x7f.1"``, ``"017700000001"``, ``"127.1"`` all give 127.0.0.1.
    Returns None when ``host`` is not such a number (a trailing dot is tolerated).
    """
    host = host.removesuffix(".")
    parts = host.split(".")
    if not host or len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                v = int(part[2:], 16) if len(part) > 2 else 0
            elif len(part) > 1 and part[0] == "0":
                v = int(part[1:], 8)
            else:
                if not part.isdigit():
                    return None
                v = int(part, 10)
        except ValueError:
            return None
        values.append(v)
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = (number << (8 * (4 - len(head)))) | last
    return ipaddress.IPv4Address(number)


def parse_host_address(host: str) -> IPAddress | None:
    """The address a host literal denotes (any IPv4 spelling, IPv6 with or without []).

    Returns None for a DNS name.
    """
    h = host.strip("[]")
    if "%" in h:  # zone id, e.g. fe80::1%eth0
        h = h.split("%", 1)[0]
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    return parse_legacy_ipv4(h)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address embedded in a mapped, compatible, NAT64, 6to4 or Teredo address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _V4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def blocked_reason(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why a delivery must not connect to ``ip`` (a short word), or None when it may."""
    if ip in METADATA:
        return "metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            reason = blocked_reason(inner, allow_private=allow_private)
            return f"embedded_{reason}" if reason else None
        if ip in _NAT64_LOCAL:
            return "nat64_local"
    if allow_private:
        return None
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "cgnat"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


def check_address(ip: IPAddress | str, *, allow_private: bool = False) -> None:
    """Raise BlockedTarget if a delivery must not connect to ``ip``."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    reason = blocked_reason(addr, allow_private=allow_private)
    if reason:
        raise BlockedTarget(reason, f"address {addr} is not allowed ({reason})")


def check_url(url: str, *, allow_private: bool = False) -> str:
    """Validate a webhook URL; return the host. Raises BlockedTarget with reason:

    ``invalid_url`` (not absolute http(s), no host, credentials or fragment in it, bad
    port) or the address policy's reason when the host is a blocked address literal.
    Names are not resolved here; ``GuardedResolver`` checks them at connection time.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlockedTarget("invalid_url", f"URL is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise BlockedTarget("invalid_url", "URL scheme must be http or https")
    host = parts.hostname
    if not host:
        raise BlockedTarget("invalid_url", "URL has no host")
    if parts.username is not None or parts.password is not None:
        raise BlockedTarget("invalid_url", "URL must not contain credentials")
    if port == 0:
        raise BlockedTarget("invalid_url", "URL port must not be 0")
    if _SPACE.search(url):
        raise BlockedTarget("invalid_url", "URL must not contain whitespace")
    addr = parse_host_address(host)
    if addr is not None:
        check_address(addr, allow_private=allow_private)
    else:
        name = host.rstrip(".").lower()
        if not allow_private and (name == "localhost" or name.endswith(".localhost")):
            raise BlockedTarget("loopback", "localhost is not allowed")
    return host


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that returns only policy-checked addresses.

    Every address the name resolves to is checked; if any is blocked the whole lookup
    fails with BlockedTarget (a name that resolves to a mix of public and internal
    addresses is treated as hostile). Address literals (any spelling) are checked too.
    """

    def __init__(self, *, allow_private: bool = False, inner: AbstractResolver | None = None):
        self.allow_private = allow_private
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = parse_host_address(host)
        if literal is not None:
            check_address(literal, allow_private=self.allow_private)
            fam = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [
                {
                    "hostname": host,
                    "host": str(literal),
                    "port": port,
                    "family": fam,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise BlockedTarget("unresolvable", f"{host} did not resolve")
        for r in results:
            check_address(r["host"], allow_private=self.allow_private)
        return results

    async def close(self) -> None:
        await self._inner.close()
