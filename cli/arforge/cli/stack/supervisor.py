"""Start, watch and stop the embedded stack's child processes.

Each child runs in its own session and process group, with stdout and stderr appended to
``<data>/logs/<name>.log`` and a pid file in ``<data>/run/<name>.pid``. Linux sends each
child its stop signal if the supervisor itself dies (``PR_SET_PDEATHSIG``), and the next
start cleans whatever a killed supervisor left (:func:`procs.clean_stale`). Children stop in
the reverse order of their start, so workers drain before NATS and PostgreSQL go away.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import procs


@dataclass
class ChildSpec:
    """How to run one child.

    ``critical``: when it dies the whole stack stops (NATS, PostgreSQL, API, tracker);
    a non-critical child (a worker) is only reported. ``user``: run as this account (used
    for PostgreSQL when we are root). ``stop_timeout``: seconds between the stop signal and
    SIGKILL of whatever is left of its tree.
    """

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 15.0
    critical: bool = True
    user: str | None = None


@dataclass
class Child:
    """A started child: its spec, ``Popen`` and log file."""

    spec: ChildSpec
    proc: subprocess.Popen  # type: ignore[type-arg]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    starttime: int = 0  # /proc start time (clock ticks), to recognise its session later
    reported: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.proc.pid


def describe_exit(returncode: int) -> str:
    """``"exited with code 3"`` or ``"was killed by SIGKILL"`` for a ``Popen.returncode``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


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

    ``say`` receives one human sentence per event (start, death, stop).
    """

    def __init__(self, data_dir: Path, say: Callable[[str], None] = print) -> None:
        self.data_dir = data_dir
        self.run_dir = data_dir / "run"
        self.log_dir = data_dir / "logs"
        self.say = say
        self.children: list[Child] = []

    # -- start ---------------------------------------------------------------------
    def start(self, spec: ChildSpec) -> Child:
        """Start ``spec`` in a new session; raises ``OSError`` if it cannot be executed."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        log: IO[bytes] = log_path.open("ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n=== {stamp} arforge starts: {' '.join(spec.argv)}\n".encode())
        log.flush()
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
                preexec_fn=functools.partial(
                    procs.set_parent_death_signal, spec.stop_signal, os.getpid()
                ),
            )
        finally:
            log.close()
        info = procs.proc_info(proc.pid)
        child = Child(
            spec=spec, proc=proc, log_path=log_path, starttime=info.starttime if info else 0
        )
        self.children.append(child)
        # Wait briefly for exec so the pid file records the real command line, not ours.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and proc.poll() is None:
            if procs.cmdline(proc.pid) != procs.cmdline(os.getpid()):
                break
            time.sleep(0.01)
        procs.write_pid_file(self.run_dir, spec.name, proc.pid)
        return child

    # -- watch ---------------------------------------------------------------------
    def poll(self) -> list[Child]:
        """Children that died since the last call (each reported once)."""
        dead = []
        for child in self.children:
            if not child.reported and child.proc.poll() is not None:
                child.reported = True
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

    # -- stop ----------------------------------------------------------------------
    def stop(self, child: Child) -> None:
        """Stop one child and its whole tree, then remove its pid file."""
        spec = child.spec
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
        """Stop every child, newest first; safe to call twice."""
        while self.children:
            child = self.children.pop()
            if child.proc.poll() is None:
                self.say(f"stopping {child.name} (pid {child.pid})")
            self.stop(child)
