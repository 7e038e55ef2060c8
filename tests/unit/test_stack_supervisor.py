"""The embedded stack's supervisor: real child processes, real signals, real /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from arforge.cli.stack import procs
from arforge.cli.stack.supervisor import ChildSpec, Supervisor, describe_exit


def _wait_until(pred, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _gone(pids: list[int]) -> bool:
    return all(not procs.alive(p) for p in pids)


@pytest.fixture
def sup(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Supervisor(tmp_path / "data", say=lambda _m: None)
    yield s
    s.stop_all()


def test_each_child_gets_its_own_session_log_and_pid_file(sup: Supervisor) -> None:
    child = sup.start(ChildSpec(name="sleeper", argv=["sleep", "1000"]))
    info = procs.proc_info(child.pid)
    assert info is not None
    assert info.sid == child.pid and info.pgid == child.pid
    assert info.sid != os.getsid(0)
    rec = procs.read_pid_file(sup.run_dir / "sleeper.pid")
    assert rec is not None and rec.pid == child.pid
    assert rec.cmdline == ["sleep", "1000"]
    assert rec.is_live_and_ours()
    assert "arforge starts: sleep 1000" in (sup.log_dir / "sleeper.log").read_text()


def test_shutdown_leaves_no_process_behind(sup: Supervisor) -> None:
    # Plain children, a child whose grandchild left for its own session, and a child that
    # ignores SIGTERM: after stop_all none of them (nor their descendants) may remain.
    plain = [sup.start(ChildSpec(name=f"sleep{i}", argv=["sleep", "1000"])) for i in range(3)]
    escaper = sup.start(
        ChildSpec(name="escaper", argv=["bash", "-c", "setsid sleep 1001 & sleep 1002 & wait"])
    )
    stubborn = sup.start(
        ChildSpec(
            name="stubborn",
            argv=["bash", "-c", "trap '' TERM; sleep 1003 & wait; sleep 1004"],
            stop_timeout=1.0,
        )
    )
    assert _wait_until(lambda: len(procs.members(escaper.pid)) >= 2)
    assert _wait_until(lambda: len(procs.members(stubborn.pid)) >= 1)
    every = [c.pid for c in [*plain, escaper, stubborn]]
    for c in (escaper, stubborn):
        every += [p.pid for p in procs.members(c.pid)]
    escaped = [p for p in procs.descendants(escaper.pid) if p.sid != escaper.pid]
    assert escaped, "the setsid grandchild should be in another session"
    assert len(set(every)) >= 8

    sup.stop_all()

    assert _gone(every), [p for p in every if procs.alive(p)]
    assert list(sup.run_dir.glob("*.pid")) == []
    assert sup.children == []


def test_a_killed_child_is_reported_with_its_log_tail(sup: Supervisor) -> None:
    script = "import sys, time; print('worker says hello', flush=True); time.sleep(1000)"
    child = sup.start(ChildSpec(name="worker", argv=[sys.executable, "-c", script]))
    assert _wait_until(lambda: "worker says hello" in (sup.log_dir / "worker.log").read_text())
    assert sup.poll() == []
    os.kill(child.pid, signal.SIGKILL)
    dead: list = []  # type: ignore[type-arg]

    def died() -> bool:
        dead.extend(sup.poll())
        return bool(dead)

    assert _wait_until(died)
    assert [c.name for c in dead] == ["worker"]
    report = sup.death_report(dead[0])
    assert "worker (pid" in report
    assert "was killed by SIGKILL" in report
    assert "worker says hello" in report
    assert sup.poll() == []  # reported once


def test_exit_code_is_reported() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV"


def test_stale_pid_files_are_cleaned(tmp_path: Path) -> None:
    run = tmp_path / "run"
    # A leftover "of ours": a process in its own session, with a grandchild.
    ours = subprocess.Popen(["bash", "-c", "sleep 1005 & wait"], start_new_session=True)
    assert _wait_until(lambda: len(procs.members(ours.pid)) >= 2)
    tree = [p.pid for p in procs.members(ours.pid)]
    procs.write_pid_file(run, "leftover", ours.pid)
    # A pid file whose pid now belongs to another program: must not be touched.
    other = subprocess.Popen(["sleep", "1006"], start_new_session=True)
    procs.write_pid_file(run, "reused", other.pid)
    rec = procs.read_pid_file(run / "reused.pid")
    assert rec is not None
    (run / "reused.pid").write_text(
        f'{{"name": "reused", "pid": {other.pid}, "cmdline": ["nats-server"],'
        f' "starttime": {rec.starttime}}}'
    )
    # A pid file for a process that is long gone, and one that is garbage.
    done = subprocess.Popen(["true"])
    done.wait()
    procs.write_pid_file(run, "gone", done.pid)
    (run / "garbage.pid").write_text("not json")
    try:
        killed = procs.clean_stale(run)
        ours.wait(timeout=10)
        assert killed == [f"leftover (pid {ours.pid})"]
        assert _gone(tree)
        assert procs.alive(other.pid), "a process that is not ours was killed"
        assert list(run.glob("*.pid")) == []
    finally:
        other.kill()
        other.wait()
        ours.kill()


def test_pid_reuse_is_detected_by_start_time(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "1007"], start_new_session=True)
    try:
        assert _wait_until(lambda: procs.cmdline(proc.pid) == ["sleep", "1007"])  # exec done
        procs.write_pid_file(tmp_path, "x", proc.pid)
        rec = procs.read_pid_file(tmp_path / "x.pid")
        assert rec is not None and rec.is_live_and_ours()
        fake = procs.PidRecord(rec.name, rec.pid, rec.cmdline, rec.starttime - 1)
        assert not fake.is_live_and_ours()
    finally:
        proc.kill()
        proc.wait()


SUPERVISOR_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from arforge.cli.stack.supervisor import ChildSpec, Supervisor
    sup = Supervisor(Path(sys.argv[1]), say=lambda m: None)
    sup.start(ChildSpec(name="polite", argv=["sleep", "1010"]))
    sup.start(ChildSpec(name="deaf", argv=["bash", "-c", "trap '' TERM; sleep 1011 & wait"]))
    print("started", flush=True)
    time.sleep(1000)
    """
)


def test_children_of_a_killed_supervisor_are_cleaned(tmp_path: Path) -> None:
    # kill -9 of the supervisor: Linux sends each child its stop signal (PDEATHSIG); one
    # that ignores it is found through its pid file at the next start.
    data = tmp_path / "data"
    parent = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR_SCRIPT, str(data)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == "started"
    polite = procs.read_pid_file(data / "run" / "polite.pid")
    deaf = procs.read_pid_file(data / "run" / "deaf.pid")
    assert polite is not None and deaf is not None
    assert _wait_until(lambda: len(procs.members(deaf.pid)) >= 2)
    deaf_tree = [p.pid for p in procs.members(deaf.pid)]
    parent.kill()
    parent.wait()
    assert _wait_until(lambda: not procs.alive(polite.pid)), "PDEATHSIG did not stop the child"
    time.sleep(0.3)
    assert deaf.is_live_and_ours(), "a child ignoring SIGTERM survives its supervisor"

    killed = procs.clean_stale(data / "run")

    assert f"deaf (pid {deaf.pid})" in killed
    assert _wait_until(lambda: _gone(deaf_tree))
    assert list((data / "run").glob("*.pid")) == []


def test_a_refused_second_up_leaves_the_running_stack_untouched(tmp_path: Path) -> None:
    """`arforge up` on a data dir whose supervisor is alive exits 1 and changes nothing."""
    data = tmp_path / ".arforge"
    run = data / "run"
    # Stand-ins for a running stack: a live "supervisor" and a live child, with pid files.
    sup = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(121)"])
    try:
        procs.write_pid_file(run, "supervisor", sup.pid)
        procs.write_pid_file(run, "nats", child.pid)
        (data / "stack.json").write_text('{"database_url": "postgresql://x@127.0.0.1/arforge_1"}')
        (data / "api-key").write_text("afk_test\n")
        (data / "api-url").write_text("http://127.0.0.1:1\n")
        before = {p.relative_to(data): p.read_bytes() for p in data.rglob("*") if p.is_file()}

        r = subprocess.run(
            [sys.executable, "-m", "arforge.cli.main", "up", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("ARFORGE_")},
        )  # fmt: skip
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"already running from {data} (pid {sup.pid})" in r.stderr.replace("\n", "")
        assert "stopped" not in r.stdout + r.stderr
        after = {p.relative_to(data): p.read_bytes() for p in data.rglob("*") if p.is_file()}
        assert after == before
        assert sup.poll() is None and child.poll() is None
        # The running stack's database is still found by `arforge keys create` & co.
        from arforge.cli import config

        assert config.database_url(str(data), None) == "postgresql://x@127.0.0.1/arforge_1"
    finally:
        for p in (sup, child):
            p.kill()
            p.wait()
