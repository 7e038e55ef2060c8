"""Process isolation: results, progress, JobFailed codes, native aborts and their reason."""

import asyncio
import os
import sys
from pathlib import Path

import pytest

from arforge.shared.errors import ChildCrashed, JobFailed, Retry
from arforge.shared.isolation import run_isolated


def _add(a: int, b: int, on_progress) -> int:  # type: ignore[no-untyped-def]
    on_progress(0.5, "half")
    print("noise on stdout must not break the channel")
    os.write(1, b"C-level noise on fd 1\n")
    return a + b


def _glog_abort(on_progress) -> None:  # type: ignore[no-untyped-def]
    sys.stderr.write(
        "F20261129 12:00:00.000 1 reconstruction.cc:42] Check failed: NumRegImages() >= 2\n"
    )
    for i in range(40):  # a long stack trace after the reason
        sys.stderr.write(f"    @ 0x{i:08x} frame {i}\n")
    sys.stderr.flush()
    os.abort()


def _fail(on_progress) -> None:  # type: ignore[no-untyped-def]
    raise JobFailed("bad_input", "nope", {"n": 1})


def _boom(on_progress) -> None:  # type: ignore[no-untyped-def]
    raise ValueError("kaboom")


async def test_result_and_progress_survive_stdout_noise() -> None:
    seen: list[tuple[float, str]] = []
    assert await run_isolated(_add, 2, 3, on_progress=lambda f, s: seen.append((f, s))) == 5
    assert seen == [(0.5, "half")]


async def test_native_abort_keeps_the_reason_past_a_stack_trace() -> None:
    with pytest.raises(ChildCrashed) as exc:
        await run_isolated(_glog_abort)
    assert exc.value.signal_name == "SIGABRT"
    assert "Check failed: NumRegImages() >= 2" in exc.value.stderr_tail


async def test_job_failed_keeps_code_and_other_errors_retry() -> None:
    with pytest.raises(JobFailed) as jf:
        await run_isolated(_fail)
    assert (jf.value.code, jf.value.details) == ("bad_input", {"n": 1})
    with pytest.raises(Retry) as r:
        await run_isolated(_boom)
    assert r.value.code == "compute_error" and "kaboom" in r.value.message


async def test_cancel_kills_the_child() -> None:
    task = asyncio.create_task(run_isolated(_sleep_forever))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _sleep_forever(on_progress) -> None:  # type: ignore[no-untyped-def]
    import time

    time.sleep(3600)


def _record_pid_and_sleep(path: str, on_progress) -> None:  # type: ignore[no-untyped-def]
    import time
    from pathlib import Path

    Path(path).write_text(str(os.getpid()))
    time.sleep(3600)


def test_the_child_dies_with_a_killed_worker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys; sys.path.insert(0, 'tests/unit');"
            "from test_isolation import _record_pid_and_sleep;"
            "from arforge.shared.isolation import run_isolated;"
            f"asyncio.run(run_isolated(_record_pid_and_sleep, {str(pid_file)!r}))",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.05)
        child = int(pid_file.read_text())
        os.kill(worker.pid, signal.SIGKILL)  # the worker dies without cleaning up
        worker.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the isolation child outlived its worker"
    finally:
        worker.kill()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
