"""Start, watch and stop the embedded stack's child processes.

Each child runs in its own session and process group, with stdout and stderr appended to
``<data>/logs/<name>.log`` and a pid file in ``<data>/run/<name>.pid``. Linux sends each
child its stop signal if the supervisor itself dies (``PR_SET_PDEATHSIG``), and the next
start cleans whatever a killed supervisor left (:func:`procs.clean_stale`); a watchdog child
(:meth:`Supervisor.start_watchdog`) does that at once when the supervisor dies. A child marked
``restart`` is started again after it dies, with exponential backoff (:class:`Backoff`).
Children stop in the reverse order of their start, so workers drain before NATS and
PostgreSQL go away.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import procs


@dataclass(frozen=True)
class Backoff:
    """Delays between restarts of a crashing child, in seconds.

    Restart ``n`` (1-based) of one crash streak waits ``first_s * 2**(n-1)``, at most
    ``max_s``; a child that stayed up ``reset_after_s`` or longer starts a new streak.
    """

    first_s: float = 0.5
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (1-based) of a streak."""
        return min(self.max_s, self.first_s * 2.0 ** min(max(attempt - 1, 0), 64))


@dataclass
class ChildSpec:
    """How to run one child.

    ``critical``: when it dies the whole stack stops (NATS, PostgreSQL; the API and tracker
    only while the stack starts); a non-critical child is only reported. ``restart``: once
    the stack runs, start it again when it dies (see :class:`Backoff`). ``user``: run as this
    account (used for PostgreSQL when we are root). ``stop_timeout``: seconds between the
    stop signal and SIGKILL of whatever is left of its tree. ``die_with_parent``: Linux
    sends ``stop_signal`` when the supervisor dies. ``pass_fds``: descriptors it inherits.
    """

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 15.0
    critical: bool = True
    restart: bool = False
    user: str | None = None
    die_with_parent: bool = True
    pass_fds: tuple[int, ...] = ()


@dataclass
class Child:
    """A started child: its spec, ``Popen`` and log file."""

    spec: ChildSpec
    proc: subprocess.Popen  # type: ignore[type-arg]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    starttime: int = 0  # /proc start time (clock ticks), to recognise its session later
    reported: bool = False
    died_at: float | None = None  # time.monotonic() when poll() saw it dead
    attempt: int = 0  # which restart of the current crash streak this is (0: not a restart)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.proc.pid


def exit_reason(returncode: int) -> str:
    """``"code 3"`` or ``"killed by SIGKILL"`` for a ``Popen.returncode``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"code {returncode}"


def describe_exit(returncode: int) -> str:
    """``"exited with code 3"`` or ``"was killed by SIGKILL"`` for a ``Popen.returncode``."""
    reason = exit_reason(returncode)
    return f"was {reason}" if returncode < 0 else f"exited with {reason}"


def tail(path: Path, lines: int = 30, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of a text file (reads at most ``max_bytes`` from its end)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Owns the children of one embedded stack rooted at ``data_dir``.

    ``say`` receives one human sentence per event (start, death, restart, stop);
    ``backoff`` paces the restarts of children whose spec says ``restart``.

    Start and restart children from one long-lived thread (the main one): Linux sends the
    parent-death signal when the *thread* that forked a child exits, not the process.
    """

    def __init__(
        self, data_dir: Path, say: Callable[[str], None] = print, backoff: Backoff | None = None
    ) -> None:
        self.data_dir = data_dir
        self.run_dir = data_dir / "run"
        self.log_dir = data_dir / "logs"
        self.say = say
        self.backoff = backoff or Backoff()
        self.children: list[Child] = []
        self._due: dict[str, tuple[float, int, Child]] = {}  # name -> (when, attempt, dead)
        self._watch_fds: tuple[int, int] | None = None

    # -- start ---------------------------------------------------------------------
    def start(self, spec: ChildSpec) -> Child:
        """Start ``spec`` in a new session; raises ``OSError`` if it cannot be executed."""
        child = self._spawn(spec)
        self.children.append(child)
        return child

    def _spawn(self, spec: ChildSpec) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        log: IO[bytes] = log_path.open("ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n=== {stamp} arforge starts: {' '.join(spec.argv)}\n".encode())
        log.flush()
        preexec = None
        if spec.die_with_parent:
            preexec = functools.partial(
                procs.set_parent_death_signal, spec.stop_signal, os.getpid()
            )
        try:
            proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=spec.env,
                cwd=spec.cwd,
                start_new_session=True,
                user=spec.user,
                preexec_fn=preexec,
                pass_fds=spec.pass_fds,
            )
        finally:
            log.close()
        info = procs.proc_info(proc.pid)
        child = Child(
            spec=spec, proc=proc, log_path=log_path, starttime=info.starttime if info else 0
        )
        # Wait briefly for exec so the pid file records the real command line, not ours.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and proc.poll() is None:
            if procs.cmdline(proc.pid) != procs.cmdline(os.getpid()):
                break
            time.sleep(0.01)
        procs.write_pid_file(self.run_dir, spec.name, proc.pid)
        return child

    def start_watchdog(self) -> Child:
        """Start the ``watchdog`` child, which cleans up after this process if it dies.

        It waits for the end of a pipe only this process holds open; when this process
        dies without stopping its children (``kill -9``), it kills every process recorded in
        ``run/*.pid`` (:func:`procs.watch_supervisor`) instead of letting workers drain for
        ``drain_grace_s`` against a NATS that is gone. A clean :meth:`stop_all` stops it
        first. Restarted like a service if it dies.
        """
        if self._watch_fds is None:
            self._watch_fds = os.pipe()  # not inherited by other children (close_fds)
        read_fd = self._watch_fds[0]
        argv = [sys.executable, "-m", "arforge.cli.stack.procs", "watch", str(read_fd)]
        argv += [str(self.run_dir), str(os.getpid())]
        spec = ChildSpec(
            name="watchdog",
            argv=argv,
            stop_timeout=5.0,
            critical=False,
            restart=True,
            die_with_parent=False,
            pass_fds=(read_fd,),
        )
        return self.start(spec)

    # -- watch ---------------------------------------------------------------------
    def poll(self) -> list[Child]:
        """Children that died since the last call (each reported once)."""
        dead = []
        for child in self.children:
            if not child.reported and child.proc.poll() is not None:
                child.reported = True
                child.died_at = time.monotonic()
                dead.append(child)
        return dead

    def death_report(self, child: Child, lines: int = 30) -> str:
        """A paragraph: who died, how, and the tail of its log."""
        rc = child.proc.returncode
        how = describe_exit(rc) if rc is not None else "is not running"
        text = tail(child.log_path, lines)
        head = f"{child.name} (pid {child.pid}) {how}; last lines of {child.log_path}:"
        return head + "\n" + "\n".join("    " + ln for ln in text.splitlines())

    def get(self, name: str) -> Child | None:
        for child in self.children:
            if child.name == name:
                return child
        return None

    # -- restart -------------------------------------------------------------------
    def schedule_restart(self, child: Child) -> float:
        """Plan the restart of ``child``, which :meth:`poll` reported dead; returns the delay.

        Sweeps what is left of its session, says one line ("restarting worker (exit:
        killed by SIGKILL), attempt 2 in 1.0 s") and lets :meth:`restart_due` start it.
        The streak starts over when it had stayed up ``backoff.reset_after_s`` seconds.
        """
        now = time.monotonic()
        uptime = (child.died_at or now) - child.started_at
        attempt = 1 if uptime >= self.backoff.reset_after_s else child.attempt + 1
        delay = self.backoff.delay(attempt)
        procs.kill_orphans(child.pid, child.starttime)
        rc = child.proc.returncode
        how = exit_reason(rc) if rc is not None else "not running"
        self.say(f"restarting {child.name} (exit: {how}), attempt {attempt} in {delay:.1f} s")
        self._due[child.name] = (now + delay, attempt, child)
        return delay

    def restart_due(self) -> list[Child]:
        """Start the children whose restart time has come; returns the new children.

        The new child takes the dead one's place (so stop order is kept) and gets a fresh
        pid file. A child that cannot be executed is tried again after the next delay.
        """
        started = []
        now = time.monotonic()
        for name, (when, attempt, old) in list(self._due.items()):
            if when > now:
                continue
            del self._due[name]
            try:
                new = self._spawn(old.spec)
            except OSError as e:
                delay = self.backoff.delay(attempt + 1)
                self.say(f"cannot restart {name}: {e}; attempt {attempt + 1} in {delay:.1f} s")
                self._due[name] = (now + delay, attempt + 1, old)
                continue
            new.attempt = attempt
            index = next((i for i, c in enumerate(self.children) if c is old), None)
            if index is None:
                self.children.append(new)
            else:
                self.children[index] = new
            started.append(new)
        return started

    def pending_restarts(self) -> dict[str, float]:
        """Name -> seconds until its planned restart (0 when due)."""
        now = time.monotonic()
        return {name: max(0.0, when - now) for name, (when, _, _) in self._due.items()}

    # -- stop ----------------------------------------------------------------------
    def stop(self, child: Child) -> None:
        """Stop one child and its whole tree, then remove its pid file."""
        spec = child.spec
        self._due.pop(spec.name, None)
        if child.proc.poll() is not None:
            # Already dead and reaped: its pid may be reused, so only sweep its session.
            forced = procs.kill_orphans(child.pid, child.starttime)
        else:
            forced = procs.kill_tree(
                child.pid, spec.stop_signal, timeout=spec.stop_timeout, reap=child.proc.poll
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=5)
        if forced:
            self.say(f"{child.name}: killed {len(forced)} process(es) that ignored the stop signal")
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / f"{spec.name}.pid").unlink()

    def stop_all(self) -> None:
        """Stop every child, newest first, and cancel planned restarts; safe to call twice."""
        self._due.clear()
        while self.children:
            child = self.children.pop()
            if child.proc.poll() is None:
                self.say(f"stopping {child.name} (pid {child.pid})")
            self.stop(child)
        if self._watch_fds is not None:
            for fd in self._watch_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._watch_fds = None
