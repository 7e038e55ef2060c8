"""SSRF policy: every spelling of an internal address is blocked unless allowed."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from arforge.webhooks.ssrf import (
    BlockedTarget,
    GuardedResolver,
    blocked_reason,
    check_url,
    parse_host_address,
    parse_legacy_ipv4,
)

BLOCKED_URLS = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://127.0.0.1./",
    "http://localhost:8080/hook",
    "http://app.localhost/",
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://[::1]/",
    "http://[::]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::10.0.0.1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::1]/",
    "http://[::127.0.0.1]/",
    "http://[ff02::1]/",
]


@pytest.mark.parametrize("url", BLOCKED_URLS)
def test_blocked_url_forms(url: str) -> None:
    with pytest.raises(BlockedTarget) as e:
        check_url(url)
    assert e.value.reason != "invalid_url", e.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://93.184.216.34:8080/x",
        "http://[2606:4700::1111]/",
        "http://[::ffff:8.8.8.8]/",
        "http://[64:ff9b::808:808]/",
    ],
)
def test_public_urls_pass(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "example.com/hook",
        "http:///x",
        "http://user:pw@example.com/",
        "file:///etc/passwd",
        "http://example.com:0/",
        "http://exa mple.com/",
    ],
)
def test_invalid_urls(url: str) -> None:
    with pytest.raises(BlockedTarget) as e:
        check_url(url)
    assert e.value.reason == "invalid_url"


def test_allow_private_keeps_metadata_blocked() -> None:
    check_url("http://127.0.0.1:9000/", allow_private=True)
    check_url("http://10.1.2.3/", allow_private=True)
    check_url("http://localhost/", allow_private=True)
    for url in [
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://[::ffff:169.254.169.254]/",
    ]:
        with pytest.raises(BlockedTarget):
            check_url(url, allow_private=True)


def test_legacy_ipv4_parser() -> None:
    loop = ipaddress.IPv4Address("127.0.0.1")
    for s in ["2130706433", "0x7f.1", "017700000001", "127.1", "0x7f.0.0.1", "127.0.1"]:
        assert parse_legacy_ipv4(s) == loop, s
    for s in ["example.com", "1.2.3.4.5", "256.1.1.1", "08", "1.2.3.256", ""]:
        assert parse_legacy_ipv4(s) is None, s
    assert parse_host_address("[::1]") == ipaddress.ip_address("::1")
    assert parse_host_address("example.com") is None


def test_reasons() -> None:
    ip = ipaddress.ip_address
    assert blocked_reason(ip("169.254.169.254")) == "metadata"
    assert blocked_reason(ip("100.100.1.1")) == "cgnat"
    assert blocked_reason(ip("::ffff:10.0.0.1")) == "embedded_private"
    assert blocked_reason(ip("2002:c0a8:0101::1")) == "embedded_private"
    assert blocked_reason(ip("198.18.0.1")) is not None  # benchmarking range
    assert blocked_reason(ip("240.0.0.1")) is not None
    assert blocked_reason(ip("8.8.8.8")) is None


class _FakeDNS:
    """Stands in for DNS: answers with a fixed address list (a rebinding attacker)."""

    def __init__(self, addrs: list[str]) -> None:
        self.addrs = addrs

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for a in self.addrs
        ]

    async def close(self) -> None:
        pass


async def test_resolver_checks_every_resolved_address() -> None:
    r = GuardedResolver(inner=_FakeDNS(["93.184.216.34", "10.0.0.7"]))  # type: ignore[arg-type]
    with pytest.raises(BlockedTarget) as e:
        await r.resolve("evil.example", 80)
    assert e.value.reason == "private"
    ok = GuardedResolver(inner=_FakeDNS(["93.184.216.34"]))  # type: ignore[arg-type]
    res = await ok.resolve("good.example", 443)
    assert [x["host"] for x in res] == ["93.184.216.34"]


async def test_resolver_real_dns_for_decimal_and_localhost() -> None:
    r = GuardedResolver()
    for host in ["localhost", "2130706433", "0x7f.1"]:
        with pytest.raises(BlockedTarget):
            await r.resolve(host, 80)
    r2 = GuardedResolver(allow_private=True)
    res = await r2.resolve("localhost", 80)
    assert res and all(ipaddress.ip_address(x["host"]).is_loopback for x in res)
