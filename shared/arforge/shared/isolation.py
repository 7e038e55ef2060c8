"""Run compute in a child process group that the worker can kill, streaming progress back.

Native libraries (pycolmap, Blender, diffusers) can abort the whole process on bad input
(glog ``FATAL`` -> SIGABRT, a segfault). :func:`run_isolated` runs a module-level function
in a fresh ``python -m arforge.shared.isolation`` child started in its own session (so its
process group holds everything it spawns). The wire protocol on a private pipe (the
child's stdout fd is redirected to stderr, so C code printing to fd 1 cannot corrupt it):

* ``P <json [fraction, stage]>`` progress, forwarded to ``on_progress``;
* ``R <base64 pickle>`` the return value;
* ``E <base64 pickle of dict>`` an exception (JobFailed keeps its code).

A child killed by a signal raises :class:`~arforge.shared.errors.ChildCrashed` (a failed,
retryable attempt) with the tail of its stderr. Cancelling the awaiting task sends SIGTERM
then SIGKILL to the whole process group.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pickle
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ChildCrashed, JobFailed, Retry

ProgressFn = Callable[[float, str], None]
KILL_GRACE_S = 1.0
STDERR_TAIL_LINES = 20


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group led by ``pid`` (ignores groups already gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    kill_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    except TimeoutError:
        pass
    # Children may outlive the leader: always sweep the whole group.
    kill_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()


async def run_isolated(
    fn: Callable[..., Any],
    *args: Any,
    on_progress: ProgressFn | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``fn(*args, on_progress=..., **kwargs)`` in a killable child process group.

    ``fn`` must be importable by reference (module level) and arguments picklable.
    Returns what ``fn`` returns. Raises :class:`JobFailed` as raised in the child,
    :class:`ChildCrashed` when the child dies by a signal, :class:`Retry` (code
    ``compute_error``) for any other exception in the child.
    """
    payload = pickle.dumps((fn, args, kwargs))
    read_fd, write_fd = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arforge.shared.isolation",
        str(write_fd),
        str(os.getpid()),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=(write_fd,),
        start_new_session=True,
        # The child imports ``fn`` by reference: give it the parent's import path.
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **(env or {})},
    )
    os.close(write_fd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
    )
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    fatal: deque[str] = deque(maxlen=3)  # glog FATAL / "Check failed" lines, kept apart

    async def pump_stderr() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            text = line.decode(errors="replace").rstrip()
            tail.append(text)
            if _is_fatal_line(text):
                fatal.append(text)

    stderr_task = asyncio.create_task(pump_stderr())
    outcome: tuple[str, Any] | None = None
    try:
        assert proc.stdin is not None
        proc.stdin.write(payload)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await proc.stdin.drain()
        proc.stdin.close()
        async for line in reader:
            tag, _, body = line.rstrip(b"\n").partition(b" ")
            if tag == b"P" and on_progress is not None:
                fraction, stage = json.loads(body)
                on_progress(float(fraction), str(stage))
            elif tag == b"R":
                outcome = ("ok", pickle.loads(base64.b64decode(body)))
            elif tag == b"E":
                outcome = ("err", pickle.loads(base64.b64decode(body)))
        rc = await proc.wait()
        await stderr_task
    except BaseException:
        await _terminate(proc)
        stderr_task.cancel()
        raise
    finally:
        transport.close()
        kill_group(proc.pid)  # nothing the child spawned outlives the call
    if outcome is not None and outcome[0] == "ok":
        return outcome[1]
    if outcome is not None:
        err = outcome[1]
        if err["kind"] == "JobFailed":
            raise JobFailed(err["code"], err["message"], err.get("details"))
        raise Retry(f"{err['type']}: {err['message']}", code="compute_error")
    # The abort reason first (a stack trace after it would push it out of the tail).
    stderr = " | ".join([*fatal, *[t for t in list(tail)[-5:] if t not in fatal]])
    if rc < 0:
        raise ChildCrashed(signal.Signals(-rc).name, stderr)
    raise ChildCrashed(f"exit status {rc}", stderr)


async def run_process(
    argv: Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """Run a command in its own process group; returns ``(returncode, stdout, stderr)``.

    Cancelling the awaiting task kills the whole group (the command and its children).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await proc.communicate()
    except BaseException:
        await _terminate(proc)
        raise
    finally:
        kill_group(proc.pid)
    return int(proc.returncode or 0), out, err


def _is_fatal_line(text: str) -> bool:
    """glog's fatal lines start ``F<mmdd>`` (e.g. ``F20261129 ...`` or ``F1129 ...``)."""
    return (
        "Check failed" in text
        or "FATAL" in text
        or (len(text) > 5 and text[0] == "F" and text[1:5].isdigit())
    )


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent (the worker) dies, e.g. from
    SIGKILL; if the parent is already gone, exit now. Nothing happens off Linux.

    The child runs in its own session (so cancel can kill its group), which also puts it
    out of reach of whoever stops the worker's group: without this it computes on as an
    orphan until it next writes to the closed channel.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def _child_main(fd: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    channel = os.fdopen(fd, "wb", buffering=0)
    os.dup2(2, 1)  # stray prints (Python or C) go to stderr, never into the channel
    sys.stdout = sys.stderr

    def send(tag: bytes, body: bytes) -> None:
        channel.write(tag + b" " + body + b"\n")

    def on_progress(fraction: float, stage: str) -> None:
        send(b"P", json.dumps([float(fraction), str(stage)]).encode())

    fn, args, kwargs = pickle.loads(sys.stdin.buffer.read())
    try:
        result = fn(*args, on_progress=on_progress, **kwargs)
    except JobFailed as e:
        err = {"kind": "JobFailed", "code": e.code, "message": e.message, "details": e.details}
        send(b"E", base64.b64encode(pickle.dumps(err)))
    except BaseException as e:
        traceback.print_exc()
        err = {"kind": "Error", "type": type(e).__name__, "message": str(e)}
        send(b"E", base64.b64encode(pickle.dumps(err)))
    else:
        send(b"R", base64.b64encode(pickle.dumps(result)))
    channel.close()


if __name__ == "__main__":
    _child_main(int(sys.argv[1]), int(sys.argv[2]))
