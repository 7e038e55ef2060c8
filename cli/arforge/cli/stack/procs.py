"""Linux process bookkeeping for the embedded stack: /proc reads, pid files, group kills.

Every child of the supervisor starts in its own session (``setsid``), so its session id and
process-group id equal its pid. Everything it forks stays in that session unless it calls
``setsid`` itself; :func:`kill_tree` therefore kills the session *and* the descendant tree
(a worker's compute child may sit in its own process group or session).

Pid files are JSON ``{"name", "pid", "cmdline", "starttime"}``; a file is trusted only when
``/proc/<pid>/cmdline`` and the start time still match, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcInfo:
    """One ``/proc/<pid>/stat`` line: parent, group, session and start time (clock ticks)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    starttime: int
    state: str


def proc_info(pid: int) -> ProcInfo | None:
    """Parse ``/proc/<pid>/stat``; ``None`` when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return ProcInfo(
        pid=pid,
        state=rest[0],
        ppid=int(rest[1]),
        pgid=int(rest[2]),
        sid=int(rest[3]),
        starttime=int(rest[19]),
    )


def cmdline(pid: int) -> list[str] | None:
    """``/proc/<pid>/cmdline`` as a list; ``None`` when gone (or a zombie with no cmdline)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None
    return [p.decode("utf-8", "replace") for p in raw.rstrip(b"\0").split(b"\0")]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    info = proc_info(pid)
    return info is not None and info.state != "Z"


def all_procs() -> list[ProcInfo]:
    """Every process visible in /proc (a snapshot)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_info(int(entry))
            if info is not None:
                out.append(info)
    return out


def descendants(pid: int, procs: Iterable[ProcInfo] | None = None) -> list[ProcInfo]:
    """All live descendants of ``pid`` (children, grandchildren, ...), from one snapshot."""
    snapshot = list(procs) if procs is not None else all_procs()
    children: dict[int, list[ProcInfo]] = {}
    for p in snapshot:
        children.setdefault(p.ppid, []).append(p)
    out: list[ProcInfo] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child.pid)
    return out


def members(leader: int) -> list[ProcInfo]:
    """Processes in the session or process group led by ``leader``, plus its descendants."""
    snapshot = all_procs()
    found = {p.pid: p for p in snapshot if p.sid == leader or p.pgid == leader}
    for p in descendants(leader, snapshot):
        found.setdefault(p.pid, p)
    return [p for p in found.values() if p.state != "Z"]


def _signal_all(procs: Iterable[ProcInfo], sig: int) -> None:
    for p in procs:
        cur = proc_info(p.pid)
        if cur is None or cur.starttime != p.starttime:
            continue  # gone, or the pid was reused
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, sig)


def kill_tree(
    leader: int,
    sig: int = signal.SIGTERM,
    timeout: float = 10.0,
    reap: Callable[[], object] | None = None,
) -> list[int]:
    """Stop ``leader`` and everything it started; returns the pids that needed SIGKILL.

    Sends ``sig`` to the leader only (so a server can shut its own children down in order),
    waits up to ``timeout`` seconds for the leader, then SIGTERMs the remaining members, waits
    briefly and SIGKILLs whatever is left. ``reap`` (e.g. ``Popen.poll``) is called while
    waiting so our own child does not linger as a zombie.
    """
    tracked = {p.pid: p for p in members(leader)}
    info = proc_info(leader)
    if info is not None:
        tracked.setdefault(leader, info)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(leader, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reap is not None:
            reap()
        if not alive(leader):
            break
        time.sleep(0.05)
    # New members may have appeared while stopping; include them.
    for p in members(leader):
        tracked.setdefault(p.pid, p)
    left = [p for p in tracked.values() if _same(p)]
    if left:
        _signal_all(left, signal.SIGTERM)
        _wait_gone(left, 2.0, reap)
        left = [p for p in left if _same(p)]
        _signal_all(left, signal.SIGKILL)
        _wait_gone(left, 5.0, reap)
    if reap is not None:
        reap()
    return [p.pid for p in left]


def _same(p: ProcInfo) -> bool:
    cur = proc_info(p.pid)
    return cur is not None and cur.starttime == p.starttime and cur.state != "Z"


def _wait_gone(procs: list[ProcInfo], timeout: float, reap: Callable[[], object] | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_same(p) for p in procs):
        if reap is not None:
            reap()
        time.sleep(0.05)


def set_parent_death_signal(sig: int, parent_pid: int) -> None:
    """In a forked child: ask Linux to send ``sig`` when the parent dies (``preexec_fn``).

    If the parent already died between fork and this call, exit at once.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


# --- pid files ----------------------------------------------------------------------
@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds."""

    name: str
    pid: int
    cmdline: list[str]
    starttime: int

    def is_live_and_ours(self) -> bool:
        """The recorded process still runs with the same command line and start time."""
        info = proc_info(self.pid)
        return (
            info is not None
            and info.state != "Z"
            and info.starttime == self.starttime
            and cmdline(self.pid) == self.cmdline
        )


def write_pid_file(run_dir: Path, name: str, pid: int) -> Path:
    """Record ``pid`` (with its cmdline and start time) as ``run_dir/<name>.pid``."""
    info = proc_info(pid)
    cmd = cmdline(pid) or []
    rec = {"name": name, "pid": pid, "cmdline": cmd, "starttime": info.starttime if info else 0}
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{name}.pid"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec))
    tmp.replace(path)
    return path


def read_pid_file(path: Path) -> PidRecord | None:
    """Parse a pid file; ``None`` when it is missing or unreadable."""
    try:
        raw = json.loads(path.read_text())
        return PidRecord(
            name=str(raw["name"]),
            pid=int(raw["pid"]),
            cmdline=[str(x) for x in raw["cmdline"]],
            starttime=int(raw["starttime"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clean_stale(run_dir: Path, skip: Iterable[str] = ()) -> list[str]:
    """Kill leftovers recorded in ``run_dir/*.pid`` and remove the files.

    A file whose process is gone, or whose pid now belongs to another program, is just
    removed; a live process of ours is killed with its whole session and tree. Names in
    ``skip`` are left alone. Returns ``"<name> (pid N)"`` for each process killed.
    """
    killed: list[str] = []
    if not run_dir.is_dir():
        return killed
    skip_set = set(skip)
    for path in sorted(run_dir.glob("*.pid")):
        rec = read_pid_file(path)
        if rec is not None and rec.name in skip_set:
            continue
        if rec is not None and rec.pid != os.getpid():
            if rec.is_live_and_ours():
                kill_tree(rec.pid, signal.SIGTERM, timeout=5.0)
                killed.append(f"{rec.name} (pid {rec.pid})")
            elif proc_info(rec.pid) is None:
                # The leader is gone; members of its session may survive it (orphans).
                orphans = kill_orphans(rec.pid, rec.starttime)
                if orphans:
                    killed.append(f"{rec.name} orphans (pids {orphans})")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return killed


def kill_orphans(sid: int, min_starttime: int) -> list[int]:
    """Kill processes left in session ``sid`` after its leader died; returns their pids.

    Only processes started at or after ``min_starttime`` (the leader's start, in clock ticks)
    count, so a later, unrelated session that reuses the number is never touched.
    """
    orphans = [
        p
        for p in all_procs()
        if p.sid == sid and p.starttime >= min_starttime and p.state != "Z" and p.pid != sid
    ]
    if orphans:
        _signal_all(orphans, signal.SIGTERM)
        _wait_gone(orphans, 3.0, None)
        _signal_all([p for p in orphans if _same(p)], signal.SIGKILL)
        _wait_gone(orphans, 3.0, None)
    return [p.pid for p in orphans]


def watch_supervisor(fd: int, run_dir: Path, supervisor_pid: int) -> list[str]:
    """The watchdog's work: wait for the supervisor to exit, then kill what it left running.

    Blocks until every write end of the pipe whose read end is ``fd`` is closed, which
    happens when the supervisor process exits, however it dies. If ``run_dir/supervisor.pid``
    still names ``supervisor_pid`` (it died without stopping the stack; a clean stop removes
    the file first), runs :func:`clean_stale` on ``run_dir``. Returns what it killed.
    """
    while True:
        try:
            if not os.read(fd, 64):
                break
        except InterruptedError:
            continue
    rec = read_pid_file(run_dir / "supervisor.pid")
    if rec is None or rec.pid != supervisor_pid:
        return []  # stopped cleanly, or another stack owns the directory now
    return clean_stale(run_dir)


if __name__ == "__main__":
    # `python -m arforge.cli.stack.procs watch FD RUN_DIR SUPERVISOR_PID` (the watchdog child)
    import sys

    _, _cmd, _fd, _run, _pid = sys.argv
    _killed = watch_supervisor(int(_fd), Path(_run), int(_pid))
    if _killed:
        print(f"the supervisor (pid {_pid}) died; killed: {', '.join(_killed)}", flush=True)
