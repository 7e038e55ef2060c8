"""Work directories of dead workers are removed at start-up; others are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from arforge.shared.runtime.workdirs import (
    OWNER_FILE,
    claim,
    process_start_time,
    sweep_orphans,
)


def test_sweep_removes_only_directories_of_dead_owners(tmp_path: Path) -> None:
    root = tmp_path / "work"
    # a worker that claimed its attempt directory, wrote into it and was killed
    dead = root / "job-a-1"
    code = (
        "import os, signal, sys; from pathlib import Path;"
        "from arforge.shared.runtime.workdirs import claim;"
        f"d = Path({str(dead)!r}); claim(d); (d / 'frames.bin').write_bytes(b'x' * 4096);"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert (dead / "frames.bin").exists()
    mine = root / "job-b-1"
    claim(mine)
    foreign = root / "not-ours"  # no owner record: not the runtime's
    foreign.mkdir()
    reused = root / "job-c-2"  # a live pid, but another process's start time
    reused.mkdir()
    (reused / OWNER_FILE).write_text(
        f"{os.getpid()} {(process_start_time(os.getpid()) or 0) - 1}\n"
    )
    garbled = root / "job-d-1"
    garbled.mkdir()
    (garbled / OWNER_FILE).write_text("not numbers\n")

    removed = sweep_orphans(root)
    assert sorted(p.name for p in removed) == ["job-a-1", "job-c-2"]
    assert not dead.exists() and not reused.exists()
    assert mine.is_dir() and foreign.is_dir() and garbled.is_dir()
    assert sweep_orphans(tmp_path / "absent") == []


def test_process_start_time() -> None:
    assert process_start_time(os.getpid()) is not None
    assert process_start_time(2**22 + 12345) is None  # above the pid range
