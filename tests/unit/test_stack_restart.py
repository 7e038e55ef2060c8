"""Restarts of crashed stack children and the watchdog that cleans up after a killed
supervisor: real child processes, real signals, real pid files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arforge.cli.stack import procs
from arforge.cli.stack.stack import Stack, StackError, StackOptions
from arforge.cli.stack.supervisor import Backoff, Child, ChildSpec

RESTART = re.compile(r"restarting (\S+) \(exit: (.+)\), attempt (\d+) in ([\d.]+) s")


def _wait_until(pred: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


class Said(list[str]):
    def __call__(self, text: str) -> None:
        self.append(text)

    def restarts(self) -> list[tuple[str, str, int, float]]:
        out = []
        for line in self:
            m = RESTART.fullmatch(line)
            if m:
                out.append((m[1], m[2], int(m[3]), float(m[4])))
        return out


@pytest.fixture
def said() -> Said:
    return Said()


@pytest.fixture
def stack(tmp_path: Path, said: Said) -> Iterator[Stack]:
    """A Stack that was not started: its supervisor runs the children the test gives it."""
    backoff = Backoff(first_s=0.1, max_s=0.4, reset_after_s=0.5)
    s = Stack(StackOptions(data_dir=tmp_path / "data", restart_backoff=backoff), say=said)
    yield s
    s.sup.stop_all()


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _pid_file(stack: Stack, name: str) -> procs.PidRecord | None:
    return procs.read_pid_file(stack.sup.run_dir / f"{name}.pid")


def _check_until(stack: Stack, pred: Callable[[], object], timeout: float = 10.0) -> bool:
    """Call ``stack.check()`` as `arforge up` does (more often) until ``pred`` holds."""

    def step() -> object:
        stack.check()
        return pred()

    return _wait_until(step, timeout)


def test_backoff_doubles_from_half_a_second_and_stops_at_thirty() -> None:
    b = Backoff()
    assert [b.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert b.delay(10_000) == 30  # no overflow for a child that crashed all week
    assert b.reset_after_s == 60


def test_a_killed_service_is_restarted_with_a_new_pid_and_pid_file(
    stack: Stack, said: Said
) -> None:
    spec = ChildSpec(
        name="worker",
        argv=_py("import time; print('worker up', flush=True); time.sleep(1000)"),
        critical=False,
        restart=True,
    )
    first = stack.sup.start(spec)
    before = _pid_file(stack, "worker")
    assert before is not None and before.pid == first.pid

    os.kill(first.pid, signal.SIGKILL)
    assert _check_until(stack, lambda: stack.sup.get("worker") is not first)

    second = stack.sup.get("worker")
    assert second is not None and second.pid != first.pid
    assert second.proc.poll() is None
    assert stack.sup.children == [second]  # took the dead one's place
    after = _pid_file(stack, "worker")
    assert after is not None and after.pid == second.pid and after.is_live_and_ours()
    assert after.starttime >= before.starttime
    assert stack.sup.restart_due() == []  # nothing else planned
    assert said.restarts() == [("worker", "killed by SIGKILL", 1, 0.1)]
    death = next(line for line in said if line.startswith(f"worker (pid {first.pid})"))
    assert "was killed by SIGKILL" in death and "worker up" in death
    # The log keeps both runs.
    assert (stack.sup.log_dir / "worker.log").read_text().count("arforge starts:") == 2


def test_a_child_crashing_at_start_is_retried_with_growing_capped_delays(
    stack: Stack, said: Said
) -> None:
    spec = ChildSpec(
        name="crasher", argv=_py("import sys; sys.exit(3)"), critical=False, restart=True
    )
    stack.sup.start(spec)
    starts: list[Child] = []

    def six_restarts() -> bool:
        child = stack.sup.get("crasher")
        if child is not None and (not starts or child is not starts[-1]):
            starts.append(child)
        return len(starts) >= 7

    assert _check_until(stack, six_restarts, timeout=15)
    got = said.restarts()[:6]
    assert got == [
        ("crasher", "code 3", 1, 0.1),
        ("crasher", "code 3", 2, 0.2),
        ("crasher", "code 3", 3, 0.4),
        ("crasher", "code 3", 4, 0.4),  # capped, and still retried
        ("crasher", "code 3", 5, 0.4),
        ("crasher", "code 3", 6, 0.4),
    ]
    # Never a hot loop: each start waited at least its delay after the previous death.
    for (_, _, _, delay), dead, new in zip(got, starts, starts[1:], strict=False):
        assert dead.died_at is not None
        assert new.started_at - dead.died_at >= delay - 0.01
    assert len({c.pid for c in starts}) == len(starts)


def test_a_child_that_stayed_up_starts_a_new_streak(
    stack: Stack, said: Said, tmp_path: Path
) -> None:
    # Runs 1-3 crash at once; run 4 stays up 0.8 s (> reset_after_s 0.5) then crashes;
    # run 5 stays up.
    counter = tmp_path / "runs"
    code = f"""
        import sys, time
        from pathlib import Path
        p = Path({str(counter)!r})
        n = int(p.read_text()) + 1 if p.exists() else 1
        p.write_text(str(n))
        if n <= 3:
            sys.exit(1)
        time.sleep(0.8 if n == 4 else 1000)
        sys.exit(2)
    """
    stack.sup.start(ChildSpec(name="flaky", argv=_py(code), critical=False, restart=True))
    assert _check_until(stack, lambda: counter.exists() and counter.read_text() == "5", 15)
    assert [(how, n) for _, how, n, _ in said.restarts()] == [
        ("code 1", 1),
        ("code 1", 2),
        ("code 1", 3),
        ("code 2", 1),  # it had stayed up long enough: back to the first delay
    ]
    child = stack.sup.get("flaky")
    rec = _pid_file(stack, "flaky")
    assert child is not None and rec is not None and rec.pid == child.pid
    assert rec.is_live_and_ours()


def test_infrastructure_death_stops_the_stack_but_a_critical_service_is_restarted(
    stack: Stack, said: Said
) -> None:
    api = stack.sup.start(
        ChildSpec(name="api", argv=["sleep", "1000"], critical=True, restart=True)
    )
    nats = stack.sup.start(ChildSpec(name="nats", argv=["sleep", "1001"]))
    os.kill(api.pid, signal.SIGKILL)
    assert _check_until(stack, lambda: stack.sup.get("api") is not api)
    assert said.restarts() == [("api", "killed by SIGKILL", 1, 0.1)]

    os.kill(nats.pid, signal.SIGKILL)
    nats.proc.wait()
    with pytest.raises(StackError, match=rf"nats \(pid {nats.pid}\) was killed by SIGKILL"):
        stack.check()
    assert stack.sup.pending_restarts() == {}


def test_a_pending_restart_is_cancelled_by_stop(stack: Stack, said: Said) -> None:
    stack.sup.backoff = Backoff(first_s=30, max_s=30)
    child = stack.sup.start(
        ChildSpec(name="worker", argv=["sleep", "1002"], critical=False, restart=True)
    )
    os.kill(child.pid, signal.SIGKILL)
    assert _check_until(stack, lambda: "worker" in stack.sup.pending_restarts())
    stack.sup.stop_all()
    time.sleep(0.1)
    assert stack.sup.restart_due() == []
    assert stack.sup.children == []
    assert list(stack.sup.run_dir.glob("*.pid")) == []


SUPERVISOR = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from arforge.cli.stack import procs
    from arforge.cli.stack.supervisor import ChildSpec, Supervisor
    data, mode = Path(sys.argv[1]), sys.argv[2]
    sup = Supervisor(data, say=lambda m: None)
    # "foreign": supervisor.pid names another process, as after a new stack claimed the dir.
    procs.write_pid_file(sup.run_dir, "supervisor", 1 if mode == "foreign" else os.getpid())
    sup.start_watchdog()
    # A worker that drains for 60 s on SIGTERM, with a compute child in its own session
    # (like arforge.shared.isolation).
    drain = (
        "import signal, subprocess, time\\n"
        "subprocess.Popen(['sleep', '1020'], start_new_session=True)\\n"
        "signal.signal(signal.SIGTERM, lambda *a: time.sleep(60))\\n"
        "print('ready', flush=True)\\n"
        "time.sleep(1000)\\n"
    )
    sup.start(ChildSpec(name="drainer", argv=[sys.executable, "-c", drain], stop_timeout=0.5))
    while "ready" not in (data / "logs" / "drainer.log").read_text():
        time.sleep(0.01)
    print("started", flush=True)
    if mode == "clean":
        sys.stdin.readline()  # the test has read the pid files
        sup.stop_all()
        (sup.run_dir / "supervisor.pid").unlink()
        print("stopped", flush=True)
    time.sleep(1000)
    """
)


def _run_supervisor(data: Path, mode: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    parent = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(data), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == "started"
    pids = {}
    for name in ("watchdog", "drainer"):
        rec = procs.read_pid_file(data / "run" / f"{name}.pid")
        assert rec is not None, name
        assert rec.is_live_and_ours(), (name, procs.proc_info(rec.pid))
        pids[name] = rec.pid
    return parent, pids


def _tree(pids: dict[str, int]) -> list[int]:
    """The watchdog, the drainer and its compute child."""
    assert _wait_until(lambda: len(procs.descendants(pids["drainer"])) >= 1)
    every = set(pids.values()) | {p.pid for p in procs.members(pids["drainer"])}
    return sorted(every)


def test_the_watchdog_kills_what_a_killed_supervisor_left_promptly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    parent, pids = _run_supervisor(data, "killed")
    every = _tree(pids)
    assert len(every) == 3
    try:
        t0 = time.monotonic()
        parent.kill()  # kill -9
        parent.wait()
        # PDEATHSIG alone would leave the drainer and its compute child for 60 s.
        assert _wait_until(lambda: not any(procs.alive(p) for p in every), 20), [
            p for p in every if procs.alive(p)
        ]
        took = time.monotonic() - t0
        assert took < 15, took
        assert list((data / "run").glob("*.pid")) == []
        log = (data / "logs" / "watchdog.log").read_text()
        assert f"the supervisor (pid {parent.pid}) died; killed: drainer (pid " in log
    finally:
        procs.clean_stale(data / "run")
        for p in every:
            if procs.alive(p):
                os.kill(p, signal.SIGKILL)


def test_the_watchdog_leaves_a_cleanly_stopped_or_reclaimed_stack_alone(
    tmp_path: Path,
) -> None:
    # Clean stop: stop_all stops the watchdog with the others, before the supervisor exits.
    data = tmp_path / "clean"
    parent, pids = _run_supervisor(data, "clean")
    assert parent.stdin is not None and parent.stdout is not None
    try:
        parent.stdin.write("stop\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "stopped"
        assert not any(procs.alive(p) for p in pids.values())
        assert list((data / "run").glob("*.pid")) == []
    finally:
        parent.kill()
        parent.wait()
    time.sleep(0.2)
    assert "died" not in (data / "logs" / "watchdog.log").read_text()

    # supervisor.pid names another process: when this supervisor dies, its watchdog must
    # leave the directory to that process.
    data = tmp_path / "foreign"
    parent, pids = _run_supervisor(data, "foreign")
    every = _tree(pids)
    try:
        parent.kill()
        parent.wait()
        assert _wait_until(lambda: not procs.alive(pids["watchdog"]))
        assert (data / "run" / "drainer.pid").exists()
        assert procs.alive(pids["drainer"])  # draining after PDEATHSIG, not killed
        assert "died" not in (data / "logs" / "watchdog.log").read_text()
    finally:
        # "supervisor" (pid 1 here) must never be touched.
        killed = procs.clean_stale(data / "run", skip=["supervisor"])
        assert f"drainer (pid {pids['drainer']})" in killed
        assert _wait_until(lambda: not any(procs.alive(p) for p in every))


def test_a_killed_stacks_leftover_on_the_api_port_is_cleaned_not_refused(
    tmp_path: Path, said: Said
) -> None:
    # A leftover API of a killed stack still listens on the port; the new start must clean
    # it up (run/api.pid) instead of refusing the port. A NATS URL nobody answers then
    # stops this start right after that check, before anything else is started.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api_port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_nats = s.getsockname()[1]
    data = tmp_path / "data"
    code = f"""
        import socket, time
        s = socket.socket()
        s.bind(("127.0.0.1", {api_port}))
        s.listen()
        print("listening", flush=True)
        time.sleep(1000)
    """
    leftover = subprocess.Popen(_py(code), stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert leftover.stdout is not None and leftover.stdout.readline() == b"listening\n"
        procs.write_pid_file(data / "run", "api", leftover.pid)
        opts = StackOptions(
            data_dir=data, api_port=api_port, nats_url=f"nats://127.0.0.1:{dead_nats}"
        )
        stack = Stack(opts, say=said)
        with pytest.raises(StackError, match="NATS: no NATS server answers"):
            stack.start()
        assert leftover.wait(timeout=10) == -signal.SIGTERM
        assert f"cleaned up leftovers of a previous run: api (pid {leftover.pid})" in said
        assert stack.sup.children == []
        assert list((data / "run").glob("*.pid")) == []
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()
