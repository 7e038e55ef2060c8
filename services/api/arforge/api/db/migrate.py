"""A small forward-only SQL migrator.

Files are ``NNN_name.sql`` (``NNN`` = integer version) in :data:`MIGRATIONS_DIR` and any
``extra_dirs``; each is applied once, in version order, inside its own transaction, and
recorded in ``schema_migrations(version, name, applied_at)``. A PostgreSQL advisory lock
serialises concurrent migrators (API and tracker starting together). Versions 001-009 belong
to the API; 010+ are reserved for the webhooks service (passed as ``extra_dirs``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant shared by every ARForge migrator (pg_advisory_lock takes a bigint).
ADVISORY_LOCK_ID = 0x41_52_46_4F_52_47_45  # "ARFORGE"
_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


def discover(dirs: Iterable[Path]) -> list[tuple[int, str, Path]]:
    """``[(version, name, path)]`` sorted by version; ``ValueError`` on duplicate versions."""
    found: dict[int, tuple[int, str, Path]] = {}
    for d in dirs:
        for p in sorted(Path(d).glob("*.sql")):
            m = _NAME.match(p.name)
            if not m:
                raise ValueError(f"migration file name must be NNN_name.sql: {p}")
            version = int(m.group(1))
            if version in found:
                other = found[version][2]
                raise ValueError(f"duplicate migration version {version}: {p} and {other}")
            found[version] = (version, m.group(2), p)
    return [found[v] for v in sorted(found)]


async def migrate(dsn: str, extra_dirs: Iterable[Path] = ()) -> list[int]:
    """Apply pending migrations to the database at ``dsn``; returns the versions applied.

    Safe to call from several processes at once (advisory lock); already-applied versions are
    skipped, so a second call is a no-op. A failing file rolls back and raises.
    """
    files = discover([MIGRATIONS_DIR, *extra_dirs])
    conn = await asyncpg.connect(dsn)
    applied: list[int] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_ID)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, path in files:
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
                applied.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_ID)
    finally:
        await conn.close()
    return applied


async def _init_conn(conn: asyncpg.Connection) -> None:
    # jsonb columns come back as Python objects and accept dicts / lists directly.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_conn(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    # RESET ALL` on every release: a round trip per request. ARForge never LISTENs, SETs
    # or takes session advisory locks on pooled connections (the migrator locks on its own
    # connection), so only a transaction left open needs undoing.
    if conn.is_in_transaction():
        await conn.reset()


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """An asyncpg pool whose connections encode / decode ``jsonb`` as Python objects.

    Released connections are only rolled back if a transaction was left open (no
    session reset round trip; see ``_reset_conn``).
    """
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_conn, reset=_reset_conn
    )
    assert pool is not None
    return pool
