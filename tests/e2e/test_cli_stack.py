"""`arforge up` as a user runs it: a real subprocess, real NATS, PostgreSQL, API and workers.

Each test uses its own data directory and free ports and the session's throwaway database
(``ARFORGE_DATABASE_URL``), then checks that shutdown leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from arforge.cli.stack import procs
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.e2e
ARFORGE = [sys.executable, "-m", "arforge.cli.main"]


@dataclass
class Up:
    proc: subprocess.Popen  # type: ignore[type-arg]
    data: Path
    api_url: str
    log: Path
    ready_s: float

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tree(self) -> list[int]:
        """Every process of the stack: the supervisor's children and their sessions."""
        pids = {self.proc.pid}
        for f in (self.data / "run").glob("*.pid"):
            rec = procs.read_pid_file(f)
            if rec is not None and rec.name != "supervisor":
                pids.add(rec.pid)
                pids.update(p.pid for p in procs.members(rec.pid))
        return sorted(pids)


def _env(pg_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARFORGE_")}
    env["ARFORGE_DATABASE_URL"] = pg_url
    env["ARFORGE_LOG_LEVEL"] = "INFO"
    return env


def start_up(tmp: Path, pg_url: str, name: str = "up") -> Up:
    data = tmp / "data"
    api_port = free_port()
    log = tmp / f"{name}.log"
    argv = [*ARFORGE, "up", "--data-dir", str(data), "--api-port", str(api_port)]
    argv += ["--nats-port", str(free_port()), "--pg-port", str(free_port())]
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp,
            env=_env(pg_url),
        )  # fmt: skip
    api_url = f"http://127.0.0.1:{api_port}"
    while "ARForge is ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            pytest.fail(f"arforge up exited with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() - t0 > 180:
            proc.send_signal(signal.SIGINT)
            pytest.fail(f"arforge up not ready after 180 s:\n{log.read_text()}")
        time.sleep(0.1)
    ready_s = time.monotonic() - t0
    print(f"arforge up ready after {ready_s:.1f} s (wall, subprocess start included)")
    return Up(proc=proc, data=data, api_url=api_url, log=log, ready_s=ready_s)


def cli(up: Up, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would; it finds URL, key and database from the data dir."""
    argv = [*ARFORGE, *args, "--data-dir", str(up.data)]
    if key:
        argv += ["--api-key", key]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARFORGE_")}
    timeout = 60
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=up.data.parent
    )


def stop(up: Up, sig: int = signal.SIGINT) -> None:
    tree = up.tree()
    assert len(tree) >= 5, f"expected nats, api, tracker, webhooks...: {tree}"
    up.proc.send_signal(sig)
    assert up.proc.wait(timeout=120) == 0, up.output()
    left = [p for p in tree if procs.alive(p)]
    assert left == [], f"processes left after shutdown: {left}"
    assert sorted(p.name for p in (up.data / "run").glob("*.pid")) == []
    assert "arforge stopped" in up.output()


@pytest.fixture
def up(tmp_path: Path, pg_url: str) -> Iterator[Up]:
    u = start_up(tmp_path, pg_url)
    yield u
    if u.proc.poll() is None:
        u.proc.kill()
        u.proc.wait()
        procs.clean_stale(u.data / "run")


def test_up_keys_jobs_submit_cancel_and_clean_shutdown(up: Up) -> None:
    # The stack's own key works and is private.
    key_file = up.data / "api-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    own_key = key_file.read_text().strip()
    assert own_key.startswith("afk_")
    assert httpx.get(f"{up.api_url}/readyz", timeout=5).status_code == 200
    assert json.loads((up.data / "stack.json").read_text())["api_url"] == up.api_url

    # A new tenant's key, printed once; that tenant sees no jobs.
    r = cli(up, "keys", "create", "--tenant", "e2e-tenant")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("afk_") and key != own_key
    r = cli(up, "jobs", key=key)
    assert r.returncode == 0, r.stderr
    assert "no jobs" in r.stdout

    # Upload the bundled capture and submit; the job is visible to its tenant only.
    video = REPO / "samples" / "skull" / "skull-walkaround.mp4"
    r = cli(up, "submit", "photogrammetry", "--input", str(video), "--param", "max_frames=40",
            "--priority", "low", key=key)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = r.stdout.split("job ", 1)[1].split()[0]
    r = cli(up, "status", job_id, "--json", key=key)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["id"] == job_id and job["priority"] == "low" and job["type"] == "photogrammetry"
    r = cli(up, "status", job_id, key=own_key)
    assert r.returncode == 1 and "not_found" in r.stderr
    r = cli(up, "jobs", "--json", key=key)
    assert [j["id"] for j in json.loads(r.stdout)["items"]] == [job_id]
    r = cli(up, "jobs", key=key)  # the table shows the whole id, never "2bfea8a8-f…"
    assert r.returncode == 0 and job_id in r.stdout.split(), r.stdout

    # Cancel: accepted while it runs, or refused with job_finished if it already ended.
    r = cli(up, "cancel", job_id, key=key)
    if r.returncode == 0:
        want = {"cancelled"}
    else:
        assert "job_finished" in r.stderr, r.stderr
        want = {"failed", "completed"}
    deadline = time.monotonic() + 60
    while json.loads(cli(up, "status", job_id, "--json", key=key).stdout)["status"] not in want:
        assert time.monotonic() < deadline, f"job never reached {want}"
        time.sleep(0.5)
    # `arforge wait` on the finished job reports how it ended, not a made-up "0.0 s".
    job = json.loads(cli(up, "status", job_id, "--json", key=key).stdout)
    r = cli(up, "wait", job_id, key=key)
    out = " ".join(r.stdout.split())
    assert f"job {job_id} {job['status']}" in out, out
    assert "0.0 s" not in out and "?:" not in out, out
    if job["status"] == "cancelled":
        assert r.returncode == 1 and not out.endswith(":"), out

    # A directory without photos is refused before anything is uploaded.
    (up.data.parent / "no-photos").mkdir()
    r = cli(up, "submit", "photogrammetry", "--input", str(up.data.parent / "no-photos"), key=key)
    assert r.returncode == 2 and "holds no image files" in r.stdout + r.stderr, r.stdout

    # A bad job type or bad params are refused before the upload: nothing new in storage.
    stored = sorted(p for p in (up.data / "storage").rglob("*") if p.is_file())
    for args, want in (
        (["photogrammetry", "--param", "max_frames=-1"], "max_frames"),
        (["no-such-type"], "unknown job type 'no-such-type'"),
    ):
        r = cli(up, "submit", *args, "--input", str(video), key=key)
        out = " ".join((r.stdout + r.stderr).split())
        assert r.returncode == 2 and want in out and "uploaded" not in out, out
    assert sorted(p for p in (up.data / "storage").rglob("*") if p.is_file()) == stored

    stop(up, signal.SIGINT)


def test_killed_supervisor_is_cleaned_up_at_next_start(tmp_path: Path, pg_url: str) -> None:
    first = start_up(tmp_path, pg_url, "first")
    tree = first.tree()
    first.proc.kill()  # kill -9: no chance to stop its children
    first.proc.wait()
    # Children get SIGTERM from the kernel (PDEATHSIG) and stop on their own ...
    deadline = time.monotonic() + 60
    while any(procs.alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    # ... and whatever is left is cleaned by the next start, which must come up normally.
    second = start_up(tmp_path, pg_url, "second")
    try:
        assert [p for p in tree if procs.alive(p)] == []
        r = cli(second, "jobs")
        assert r.returncode == 0, r.stderr
        stop(second, signal.SIGTERM)
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
            procs.clean_stale(second.data / "run")


def test_second_up_on_the_same_data_dir_is_refused(up: Up, pg_url: str) -> None:
    state = (up.data / "stack.json").read_bytes()
    pids = sorted((p.name, p.read_bytes()) for p in (up.data / "run").glob("*.pid"))
    r = subprocess.run(
        [*ARFORGE, "up", "--data-dir", str(up.data), "--api-port", str(free_port()),
         "--nats-port", str(free_port())],
        capture_output=True, text=True, timeout=60, env=_env(pg_url),
    )  # fmt: skip
    assert r.returncode == 1
    assert "already running" in r.stderr
    assert "stopped" not in r.stdout + r.stderr
    assert httpx.get(f"{up.api_url}/readyz", timeout=5).status_code == 200
    # Nothing of the running stack was touched: its state and pid files, its database.
    assert (up.data / "stack.json").read_bytes() == state
    assert sorted((p.name, p.read_bytes()) for p in (up.data / "run").glob("*.pid")) == pids
    r = cli(up, "keys", "create", "--tenant", "after-refused-up")
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("afk_"), r.stderr
    stop(up)


@pytest.mark.slow
def test_demo_reconstructs_the_bundled_sample_and_stops_cleanly(
    tmp_path: Path, pg_url: str
) -> None:
    # What `make demo` runs, at draft quality to keep the suite short: start the stack,
    # upload the skull walk-around, follow the job, download its artifacts, stop.
    argv = [*ARFORGE, "demo", "--data-dir", str(tmp_path / "data"), "--param", "quality=draft",
            "--api-port", str(free_port()), "--nats-port", str(free_port())]  # fmt: skip
    log = tmp_path / "demo.log"
    seen: set[int] = set()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=tmp_path, env=_env(pg_url),
        )  # fmt: skip
        deadline = time.monotonic() + 1500
        while proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            for f in (tmp_path / "data" / "run").glob("*.pid"):
                rec = procs.read_pid_file(f)
                if rec is not None and rec.name != "supervisor":
                    seen.add(rec.pid)
                    seen.update(p.pid for p in procs.members(rec.pid))
            time.sleep(0.5)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "workers   photogrammetry" in text
    assert len(seen) >= 5, seen  # nats, api, tracker, webhooks, photogrammetry (+ children)
    assert [p for p in seen if procs.alive(p)] == [], "processes left after the demo"
    (job_dir,) = list((tmp_path / "arforge-output").iterdir())
    assert f"job {job_dir.name} completed" in text
    glb = job_dir / "model.glb"
    assert str(glb.relative_to(tmp_path)) in text
    assert glb.read_bytes()[:4] == b"glTF"
    assert zipfile.is_zipfile(job_dir / "model.usdz")
    report = json.loads((job_dir / "report.json").read_text())
    assert report["sfm"]["registered_images"] >= 3
