"""The embedded stack: NATS, PostgreSQL, storage, API, tracker, webhooks and workers.

``Stack(options).start()`` brings everything up in order, waiting for each piece to be
ready (NATS port, PostgreSQL ``SELECT 1``, API ``/readyz``), and returns a
:class:`StackInfo`; ``check()`` reports children that died and restarts the services among
them (API, tracker, webhooks, workers) with backoff; ``stop()`` stops them all, newest first.
Files under the data directory (default ``.arforge/``)::

    nats/        JetStream store            logs/<name>.log   one log per child
    pg/<major>/  private PostgreSQL cluster run/<name>.pid    pid files (stale ones cleaned)
    storage/     local object store         work/<name>/      worker scratch space
    api-key      the `default` tenant's key (0600)      api-url, stack.json   for the CLI
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from . import nats, postgres, procs, services
from .supervisor import Backoff, Child, ChildSpec, Supervisor

T = TypeVar("T")

DEFAULT_NATS_PORT = 4333
DEFAULT_API_PORT = 8000
DEFAULT_PG_PORT = 55432
DEFAULT_TENANT = "default"


class StackError(RuntimeError):
    """The stack could not start or a critical part died; the message says why."""


@dataclass
class StackOptions:
    """What ``arforge up`` was asked for. ``None`` URLs mean "start our own"."""

    data_dir: Path = Path(".arforge")
    nats_port: int = DEFAULT_NATS_PORT
    api_port: int = DEFAULT_API_PORT
    pg_port: int = DEFAULT_PG_PORT
    host: str = "127.0.0.1"
    nats_url: str | None = None
    database_url: str | None = None
    workers: list[str] | None = None  # None: every installed worker
    critical_workers: frozenset[str] = frozenset()
    ready_timeout_s: float = 120.0
    restart_backoff: Backoff = field(default_factory=Backoff)

    @classmethod
    def from_env(cls, **overrides: object) -> StackOptions:
        """Defaults, then ``ARFORGE_NATS_URL`` / ``ARFORGE_DATABASE_URL``, then ``overrides``."""
        opts = cls(
            nats_url=os.environ.get("ARFORGE_NATS_URL") or None,
            database_url=os.environ.get("ARFORGE_DATABASE_URL") or None,
        )
        for k, v in overrides.items():
            if v is not None:
                setattr(opts, k, v)
        return opts


@dataclass
class StackInfo:
    """What a started stack offers."""

    api_url: str
    api_key: str
    nats_url: str
    database_url: str
    postgres: str  # how it was chosen, in words
    workers: list[str]
    ready_after_s: float
    notes: list[str] = field(default_factory=list)


def _host_port(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"


def _port_free(host: str, port: int) -> bool:
    return not postgres.port_answers(host, port, timeout=0.3)


class Stack:
    """One embedded stack rooted at ``options.data_dir``; ``say`` prints progress lines."""

    def __init__(self, options: StackOptions, say: Callable[[str], None] = print) -> None:
        self.opts = options
        self.say = say
        self.data_dir = options.data_dir.resolve()
        self.sup = Supervisor(self.data_dir, say, options.restart_backoff)
        self.info: StackInfo | None = None
        self.claimed = False  # this process owns the data dir (its supervisor.pid is ours)
        self._started = time.monotonic()

    # -- helpers ---------------------------------------------------------------------
    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` until true; fail early (with its log) if a child died meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            self._handle_deaths(starting=True, what=what)
            self.sup.restart_due()
            if time.monotonic() > deadline:
                raise StackError(f"{what}: not ready after {timeout:.0f} s; see {self.sup.log_dir}")
            time.sleep(0.2)

    def _start_child(self, spec: ChildSpec) -> Child:
        try:
            return self.sup.start(spec)
        except OSError as e:
            raise StackError(f"cannot start {spec.name} ({spec.argv[0]}): {e}") from e

    # -- pieces ---------------------------------------------------------------------
    def _refuse_if_running(self) -> None:
        rec = procs.read_pid_file(self.sup.run_dir / "supervisor.pid")
        if rec is not None and rec.pid != os.getpid() and rec.is_live_and_ours():
            raise StackError(
                f"an ARForge stack is already running from {self.data_dir} (pid {rec.pid}); "
                "stop it with `arforge down` (or Ctrl-C in its terminal), or pass another "
                "--data-dir."
            )

    def _preflight(self) -> None:
        """Refusals that need nothing on disk, so a refused start leaves no directories.

        Ports are checked here only when there is no ``run/`` yet: otherwise a busy port
        may belong to a killed stack's leftover, which :meth:`_claim` cleans up first.
        """
        o = self.opts
        self._refuse_if_running()
        if not services.runnable("arforge.api"):
            raise StackError("the API package (arforge-api) is not installed: `make install`")
        if self.sup.run_dir.is_dir():
            return
        self._check_api_port()
        if not o.nats_url and not _port_free(o.host, o.nats_port):
            self._nats_port_taken()

    def _check_api_port(self) -> None:
        o = self.opts
        if not _port_free(o.host, o.api_port):
            raise StackError(f"port {o.api_port} for the API is already in use; pass --api-port.")

    def _claim(self) -> None:
        run = self.sup.run_dir
        run.mkdir(parents=True, exist_ok=True)
        self._refuse_if_running()
        killed = procs.clean_stale(run)
        if killed:
            self.say("cleaned up leftovers of a previous run: " + ", ".join(killed))
        procs.write_pid_file(run, "supervisor", os.getpid())
        self.claimed = True

    def _nats(self) -> str:
        o = self.opts
        if o.nats_url:
            try:
                info = nats.check_server(o.nats_url)
            except nats.NatsUnsuitable as e:
                raise StackError(f"NATS: {e}") from e
            self.say(f"NATS: using {o.nats_url} (nats-server {info.version_text}, JetStream on)")
            return o.nats_url
        if not _port_free(o.host, o.nats_port):
            self._nats_port_taken()
        store = self.data_dir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        try:
            argv = nats.server_argv(o.nats_port, store, o.host)
        except FileNotFoundError as e:
            raise StackError(str(e)) from e
        self.say(f"NATS: starting nats-server on {o.host}:{o.nats_port} (JetStream in {store})")
        self._start_child(ChildSpec(name="nats", argv=argv, stop_timeout=15.0))
        self._wait("nats-server", lambda: postgres.port_answers(o.host, o.nats_port, 0.3), 30)
        url = f"nats://{o.host}:{o.nats_port}"
        try:
            nats.check_server(url)
        except nats.NatsUnsuitable as e:
            raise StackError(f"NATS: {e}") from e
        return url

    def _nats_port_taken(self) -> None:
        o = self.opts
        try:
            found = f"nats-server {nats.read_info(o.host, o.nats_port, 2).version_text}"
        except (OSError, ValueError):
            found = "another program"
        raise StackError(
            f"port {o.nats_port} is already used by {found}, which arforge did not start. "
            "Pass --nats-port with a free port, or set ARFORGE_NATS_URL to use that server "
            f"(it must be nats-server {'.'.join(map(str, nats.MIN_VERSION))}+ with JetStream)."
        )

    def _postgres(self) -> tuple[str, str]:
        o = self.opts
        try:
            local_url = postgres.LOCAL_ADMIN_URL
            plan = postgres.choose(
                o.database_url, lambda: postgres.probe(local_url), local_url=local_url
            )
        except postgres.PostgresUnavailable as e:
            raise StackError(f"PostgreSQL: {e}") from e
        for note in plan.notes:
            self.say("PostgreSQL: " + note)
        if plan.kind == "configured":
            assert plan.admin_url
            pr = postgres.probe(plan.admin_url)
            if not pr.usable:
                raise StackError(f"PostgreSQL at ARFORGE_DATABASE_URL is not usable: {pr.error}")
            db = postgres.database_of(plan.admin_url) or "(the server's default)"
            self.say(f"PostgreSQL: using ARFORGE_DATABASE_URL, database {db}")
            return plan.admin_url, f"ARFORGE_DATABASE_URL, database {db}"
        if plan.kind == "local":
            assert plan.admin_url
            name = postgres.database_for(self.data_dir)
            url, created = postgres.ensure_database(plan.admin_url, name)
            self.say(
                f"PostgreSQL: using the server on {_host_port(plan.admin_url)}, database "
                f"{name}{' (created)' if created else ''}, private to {self.data_dir}"
            )
            return url, f"the server on {_host_port(plan.admin_url)}, database {name}"
        assert plan.bindir is not None
        if not _port_free("127.0.0.1", o.pg_port):
            raise StackError(
                f"port {o.pg_port} for the private PostgreSQL is in use by another program; "
                "pass --pg-port with a free port."
            )
        cluster = postgres.PrivateCluster(
            bindir=plan.bindir, data_root=self.data_dir / "pg", port=o.pg_port,
            log_dir=self.sup.log_dir,
        )  # fmt: skip
        self.say(f"PostgreSQL: private cluster from {plan.source} ({plan.bindir})")
        try:
            cluster.prepare()
        except (postgres.PostgresUnavailable, OSError, PermissionError) as e:
            raise StackError(f"PostgreSQL: {e}") from e
        for note in cluster.notes:
            self.say("PostgreSQL: " + note)
        self._start_child(cluster.spec())
        admin = cluster.admin_url
        self._wait("PostgreSQL", lambda: postgres.probe(admin, 2).usable, 60)
        url, _ = postgres.ensure_database(admin)
        self.say(f"PostgreSQL: ready on 127.0.0.1:{o.pg_port} (data in {cluster.pgdata})")
        return url, (
            f"a private cluster on 127.0.0.1:{o.pg_port} from {plan.source}, "
            f"database {postgres.database_of(url)}"
        )

    def _migrate(self, database_url: str) -> None:
        try:
            from arforge.api.db import migrate
        except ModuleNotFoundError as e:
            raise StackError(
                f"the API package is not installed ({e.name}); run `make install`"
            ) from e
        applied = asyncio.run(migrate(database_url))
        if applied:
            self.say(f"PostgreSQL: applied migrations {', '.join(map(str, applied))}")

    def _api_key(self, database_url: str, api_url: str) -> str:
        path = self.data_dir / "api-key"
        if path.exists():
            key = path.read_text().strip()
            if key and self._key_works(api_url, key):
                return key
            self.say(f"the key in {path} is not valid for this database; creating a new one")
        key = create_key(database_url, DEFAULT_TENANT)
        write_secret(path, key + "\n")
        return key

    @staticmethod
    def _key_works(api_url: str, key: str) -> bool:
        try:
            r = httpx.get(
                f"{api_url}/v1/jobs",
                params={"limit": 1},
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def _api_ready(self, api_url: str) -> bool:
        try:
            return httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> StackInfo:
        """Start everything; on failure stop what was started and raise :class:`StackError`."""
        self._started = time.monotonic()
        o = self.opts
        try:
            self._preflight()
            for d in ("run", "logs", "storage", "work"):
                (self.data_dir / d).mkdir(parents=True, exist_ok=True)
            self._claim()
            self._check_api_port()
            self.sup.start_watchdog()
            nats_url = self._nats()
            database_url, pg_desc = self._postgres()
            self._migrate(database_url)
            ep = services.Endpoints(nats_url, database_url, o.host, o.api_port, self.data_dir)
            available = services.installed_workers()
            workers = available if o.workers is None else o.workers
            missing = [w for w in workers if w not in available]
            if missing:
                raise StackError(
                    f"worker(s) not installed: {', '.join(missing)} (services/<name>; "
                    "`make install`)"
                )
            for spec in services.service_specs(ep, workers, o.critical_workers):
                self._start_child(spec)
            self.say(f"API: waiting for {ep.api_url}/readyz")
            self._wait("API", lambda: self._api_ready(ep.api_url), o.ready_timeout_s)
            key = self._api_key(database_url, ep.api_url)
            # A crash right after start (bad config, import error) shows up within a moment.
            time.sleep(0.5)
            self._handle_deaths(starting=True)
            self.info = StackInfo(
                api_url=ep.api_url,
                api_key=key,
                nats_url=nats_url,
                database_url=database_url,
                postgres=pg_desc,
                workers=workers,
                ready_after_s=time.monotonic() - self._started,
            )
            self._write_state(self.info)
            return self.info
        except BaseException:
            self.stop()
            raise

    def _write_state(self, info: StackInfo) -> None:
        (self.data_dir / "api-url").write_text(info.api_url + "\n")
        state = {
            "api_url": info.api_url,
            "nats_url": info.nats_url,
            "database_url": info.database_url,
            "storage_root": str(self.data_dir / "storage"),
            "supervisor_pid": os.getpid(),
            "workers": info.workers,
        }
        write_secret(self.data_dir / "stack.json", json.dumps(state, indent=2) + "\n")

    def _handle_deaths(self, starting: bool, what: str = "") -> list[Child]:
        """Report children that died and plan restarts; raise if a critical one can't be.

        While the stack starts, a critical child (API, tracker) dying means it cannot work
        as configured: fail at once. Once it runs, a ``restart`` child is restarted; NATS
        and a private PostgreSQL are not (see :meth:`check`).
        """
        dead = self.sup.poll()
        for child in dead:
            report = self.sup.death_report(child)
            if child.spec.critical and (starting or not child.spec.restart):
                raise StackError(f"{what}: {report}" if what else report)
            self.say(report)
            if child.spec.restart:
                self.sup.schedule_restart(child)
        return dead

    def check(self) -> None:
        """Report dead children, restart services that are due; call it every ~0.5 s.

        Services (API, tracker, webhooks, workers, the watchdog) are restarted with
        exponential backoff (``options.restart_backoff``). Raises :class:`StackError` when
        NATS or the private PostgreSQL dies: the stack stops rather than start them again,
        since their port may have been taken meanwhile by another program the services
        would then talk to, and a crash of either points at a problem (disk, memory, data)
        a restart loop would hide. Call it from the thread that started the stack.
        """
        self._handle_deaths(starting=False)
        self.sup.restart_due()

    def stop(self) -> None:
        """Stop every child (newest first) and remove the pid and state files.

        Does nothing unless this process claimed the data directory: a start refused
        because another stack runs there must leave that stack's files alone.
        """
        if not self.claimed:
            return
        self.sup.stop_all()
        for name in ("supervisor.pid",):
            rec = procs.read_pid_file(self.sup.run_dir / name)
            if rec is not None and rec.pid == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    (self.sup.run_dir / name).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "stack.json").unlink()


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def with_database(database_url: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(connection)`` on one asyncpg connection to ``database_url``; its result."""
    import asyncpg

    async def run() -> T:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def create_key(database_url: str, tenant: str) -> str:
    """A new API key for ``tenant`` (created if missing), via ``arforge.api.auth``."""
    from arforge.api.auth import create_api_key

    return with_database(database_url, lambda conn: create_api_key(conn, tenant))


def running_supervisor(data_dir: Path) -> procs.PidRecord | None:
    """The live supervisor of the stack in ``data_dir``, if any."""
    rec = procs.read_pid_file(data_dir / "run" / "supervisor.pid")
    if rec is not None and rec.is_live_and_ours():
        return rec
    return None
