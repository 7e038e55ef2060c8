"""Attempt work directories: who owns one, and removing those of dead workers.

The runtime removes an attempt's directory when the attempt ends. A worker killed with
SIGKILL (or a machine reset) cannot; its directories (frames, SfM databases: often
gigabytes) would stay forever. Each directory records its owner (pid and the process's
start time, so a reused pid is not mistaken for it); a worker starting up removes the
directories under its root whose owner is gone. Directories without the record are left
alone: they are not the runtime's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OWNER_FILE = ".arforge-owner"


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (``/proc/<pid>/stat`` field 22);
    ``None`` when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def claim(workdir: Path) -> None:
    """Create ``workdir`` (and parents) and record this process as its owner."""
    workdir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    (workdir / OWNER_FILE).write_text(f"{pid} {process_start_time(pid) or 0}\n")


def _owner_alive(workdir: Path) -> bool | None:
    """``True`` / ``False`` for a recorded owner; ``None`` when there is no record."""
    try:
        pid_s, start_s = (workdir / OWNER_FILE).read_text().split()
        pid, start = int(pid_s), int(start_s)
    except (OSError, ValueError):
        return None
    return process_start_time(pid) == start


def sweep_orphans(root: Path) -> list[Path]:
    """Remove the directories directly under ``root`` whose recorded owner is gone;
    returns them. Never raises for a missing root or a directory that vanishes."""
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for d in entries:
        if d.is_dir() and not d.is_symlink() and _owner_alive(d) is False:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
