"""CLI behaviour a fresh user meets without a running API: tables at 80 columns, result
warnings, finding `.arforge` from a subdirectory, `arforge down`, help texts."""

from __future__ import annotations

import argparse
import io
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from arforge.cli import config, main
from arforge.cli.jobs import print_warnings, result_warnings
from arforge.cli.stack import procs
from arforge.cli.tables import fit_table

JOB_ID = "2bfea8a8-f5a1-4c3e-9e6b-1234567890ab"
HEADERS = ["id", "type", "prio", "status", "progress", "created"]


def _row(status: str = "completed", progress: str = "100% done") -> list[str]:
    return [JOB_ID, "photogrammetry", "default", status, progress, "05-06 10:11:12"]


def test_job_table_at_80_columns_keeps_status_and_shortens_ids_only_when_needed() -> None:
    rows = [_row("completed"), _row("cancelled", "45% dense  reconstruction of the skull")]
    fitted = fit_table(HEADERS, rows, 80, keep={3, 5})
    assert fitted.ids_shortened
    assert max(map(len, fitted.lines)) <= 80
    cells = fitted.lines[3].split()
    assert cells[:4] == ["2bfea8a8", "photogrammetry", "default", "cancelled"]
    assert fitted.lines[3].endswith("05-06 10:11:12")
    assert "…" in fitted.lines[3]  # the progress column gave way
    assert fitted.lines[0].split() == HEADERS

    wide = fit_table(HEADERS, rows, 200, keep={3, 5})
    assert not wide.ids_shortened
    assert wide.lines[3].split()[:4] == [JOB_ID, "photogrammetry", "default", "cancelled"]
    assert "45% dense reconstruction of the skull" in wide.lines[3]
    unlimited = fit_table(HEADERS, rows, None, keep={3, 5})
    assert unlimited == wide

    # far too narrow: kept columns and the id prefix are still whole
    tiny = fit_table(HEADERS, rows, 20, keep={3, 5})
    assert tiny.lines[2].split()[0] == "2bfea8a8" and "completed" in tiny.lines[2]
    assert "05-06 10:11:12" in tiny.lines[2]


def test_a_table_that_fits_is_left_alone() -> None:
    rows = [["abc", "x", "queued"]]
    fitted = fit_table(["id", "type", "status"], rows, 80)
    assert not fitted.ids_shortened
    assert fitted.lines == ["id   type  status", "---  ----  ------", "abc  x     queued"]


def test_result_warnings_are_printed_for_completed_jobs_only() -> None:
    truncated = "the video is truncated (upload incomplete?); 41 of 60 s\nwere read"
    job = {"status": "completed", "result": {"artifacts": [], "warnings": [truncated, "[b]x"]}}
    assert result_warnings(job) == [
        "the video is truncated (upload incomplete?); 41 of 60 s were read",
        "[b]x",
    ]
    buf = io.StringIO()
    print_warnings(Console(file=buf, width=200, color_system=None), job)
    assert buf.getvalue().splitlines() == [
        "warning: the video is truncated (upload incomplete?); 41 of 60 s were read",
        "warning: [b]x",
    ]
    for quiet in (
        {**job, "status": "failed"},
        {"status": "completed", "result": None},
        {"status": "completed", "result": {"warnings": "not a list"}},
    ):
        buf = io.StringIO()
        print_warnings(Console(file=buf, color_system=None), quiet)
        assert buf.getvalue() == ""


def test_jobs_takes_a_cursor_and_wide() -> None:
    p = main.build_parser()
    a = p.parse_args(["jobs", "--cursor", "eyJhIjoxfQ", "--wide", "--limit", "2"])
    assert (a.cursor, a.wide, a.limit) == ("eyJhIjoxfQ", True, 2)
    assert p.parse_args(["jobs"]).cursor is None
    assert p.parse_args(["dlq", "list", "--wide"]).wide is True


def _parsers(p: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(p.prog, p)]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                out += _parsers(sp)
    return out


def test_every_option_has_help_and_submit_help_lists_the_job_types() -> None:
    from arforge.shared.contracts import Registry

    missing = [
        f"{prog} {'/'.join(a.option_strings) or a.dest}"
        for prog, sp in _parsers(main.build_parser())
        for a in sp._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert missing == []
    submit = dict(_parsers(main.build_parser()))["arforge submit"]
    text = submit.format_help()
    for spec in Registry():
        assert spec.type in text
    assert "photogrammetry: Walk-around video" in text
    assert "max_frames (default 150)" in text


def test_data_dir_is_found_from_a_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ARFORGE_DATA_DIR", "ARFORGE_API_URL", "ARFORGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "project"
    (root / ".arforge").mkdir(parents=True)
    (root / ".arforge" / "api-key").write_text("afk_found\n")
    (root / ".arforge" / "api-url").write_text("http://127.0.0.1:8123\n")
    deep = root / "captures" / "skull"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert config.data_dir(None) == root / ".arforge"
    assert config.client_config(None, None, None) == config.ClientConfig(
        "http://127.0.0.1:8123", "afk_found"
    )
    assert config.where_looked(None) == f"looked in {root / '.arforge'}, found from {deep}"
    # an explicit directory wins, and is not searched for
    assert config.data_dir("elsewhere") == Path("elsewhere")
    monkeypatch.setenv("ARFORGE_DATA_DIR", "/from/env")
    assert config.data_dir(None) == Path("/from/env")
    monkeypatch.delenv("ARFORGE_DATA_DIR")
    monkeypatch.chdir(root)
    assert config.data_dir(None) == Path(".arforge")
    monkeypatch.chdir(tmp_path)
    assert config.find_data_dir() is None
    assert config.data_dir(None) == Path(".arforge")
    assert config.where_looked(None).startswith(f"no .arforge directory in {tmp_path} or any")


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    kw: dict[str, Any] = {"width": 300, "color_system": None, "highlight": False, "soft_wrap": True}
    monkeypatch.setattr(main, "console", Console(file=out, **kw))
    monkeypatch.setattr(main, "err_console", Console(file=err, **kw))
    rc = main.main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_down_from_a_subdirectory_stops_the_stack_of_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARFORGE_DATA_DIR", raising=False)
    root = tmp_path / "project"
    sub = root / "a" / "b"
    sub.mkdir(parents=True)
    # A real process stands in for the supervisor `arforge up` records.
    proc = subprocess.Popen(["sleep", "60"])
    try:
        # record it once exec is done (before, its command line is still this Python's)
        deadline = time.monotonic() + 10
        while procs.cmdline(proc.pid) != ["sleep", "60"] and time.monotonic() < deadline:
            time.sleep(0.01)
        procs.write_pid_file(root / ".arforge" / "run", "supervisor", proc.pid)
        monkeypatch.chdir(sub)
        rc, out, _ = _cli(["down", "--timeout", "10"], monkeypatch)
        assert (rc, out.strip()) == (0, f"stopped the stack (pid {proc.pid})")
        assert proc.wait(timeout=10) == -15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    rc, out, _ = _cli(["down"], monkeypatch)
    assert rc == 0
    assert out.strip() == (
        f"no ARForge stack is running (looked in {root / '.arforge'}, found from {sub})"
    )
    monkeypatch.chdir(tmp_path)
    rc, out, _ = _cli(["down"], monkeypatch)
    assert out.strip() == (
        f"no ARForge stack is running (no .arforge directory in {tmp_path} or any parent; "
        "pass --data-dir if the stack runs elsewhere)"
    )
    rc, out, _ = _cli(["down", "--data-dir", str(tmp_path / "d")], monkeypatch)
    assert f"looked in {tmp_path / 'd'}, given by --data-dir" in out


def test_api_commands_from_a_subdirectory_use_the_projects_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ARFORGE_DATA_DIR", "ARFORGE_API_URL", "ARFORGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    rc, _, err = _cli(["jobs"], monkeypatch)
    assert rc == 2 and "no API key" in err
    # with a key found in the parent, the CLI gets as far as the (absent) API
    (tmp_path / ".arforge").mkdir()
    (tmp_path / ".arforge" / "api-key").write_text("afk_x\n")
    (tmp_path / ".arforge" / "api-url").write_text(f"http://127.0.0.1:{_closed_port()}\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    rc, _, err = _cli(["jobs"], monkeypatch)
    assert rc == 1 and "cannot reach the ARForge API" in err and "no API key" not in err


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tenant_names_follow_the_database_rule() -> None:
    assert main.tenant_name("  acme  ") == "acme"
    assert main.tenant_name("é" * 200) == "é" * 200
    with pytest.raises(ValueError, match="300 characters long; tenant names have 1 to 200"):
        main.tenant_name("x" * 300)
    with pytest.raises(ValueError, match="must not be empty"):
        main.tenant_name("   ")


def test_keys_create_refuses_a_long_tenant_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Refused before any database is contacted (this URL points nowhere).
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/none"
    started = time.monotonic()
    rc, out, err = _cli(
        ["keys", "create", "--tenant", "x" * 300, "--database-url", url], monkeypatch
    )
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [
        "error: --tenant is 300 characters long; tenant names have 1 to 200 characters"
    ]
    assert time.monotonic() - started < 5
    # a database that cannot be reached is one line too, not a traceback
    rc, _, err = _cli(["keys", "create", "--tenant", "acme", "--database-url", url], monkeypatch)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: cannot create the key in the database:")


def test_down_purge_drops_the_stacks_database_and_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make clean` = `arforge down --purge`: old jobs and keys must not come back."""
    from arforge.cli.stack import postgres

    if not postgres.probe(postgres.LOCAL_ADMIN_URL).usable:
        pytest.skip("needs the machine's PostgreSQL on 127.0.0.1:5432")
    monkeypatch.delenv("ARFORGE_DATA_DIR", raising=False)
    data = tmp_path / ".arforge"
    (data / "storage").mkdir(parents=True)
    name = postgres.database_for(data)
    _, created = postgres.ensure_database(postgres.LOCAL_ADMIN_URL, name)
    assert created
    monkeypatch.chdir(tmp_path)
    rc, out, _ = _cli(["down", "--purge"], monkeypatch)
    assert rc == 0
    assert f"dropped database {name}" in out and f"removed {data}" in out
    assert not data.exists()
    assert not postgres.drop_database(postgres.LOCAL_ADMIN_URL, name)  # already gone
    with pytest.raises(ValueError):
        postgres.drop_database(postgres.LOCAL_ADMIN_URL, "postgres")


def test_job_id_prefixes_are_told_from_whole_ids() -> None:
    from arforge.cli import ids

    assert ids.prefix_of(JOB_ID) is None  # a whole id goes to the API as given
    assert ids.prefix_of(JOB_ID.replace("-", "").upper()) is None
    assert ids.prefix_of("nope") is None  # not hex: the API answers it (not_found)
    assert ids.prefix_of("2bfea8a8") == "2bfea8a8"
    assert ids.prefix_of(" 2BFEA8A8-F5 ") == "2bfea8a8f5"
    assert ids.prefix_of("2bfe") == "2bfe"
    with pytest.raises(ValueError, match=r"^job id prefix '2bf' is too short; give at least 4"):
        ids.prefix_of("2bf")
    with pytest.raises(ValueError, match=r"^the job id is empty$"):
        ids.prefix_of("  ")


def test_a_too_short_id_prefix_is_refused_without_asking_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    for argv in (["status", "2bf"], ["cancel", "2bf"], ["dlq", "replay", "2bf"]):
        rc, out, err = _cli([*argv, "--api-url", url, "--api-key", "afk_x"], monkeypatch)
        assert (rc, out) == (2, ""), argv
        assert err.splitlines() == [
            "error: job id prefix '2bf' is too short; give at least 4 characters of the id "
            "(or the whole id)"
        ]
    # a prefix long enough is looked up: here the (absent) API is reached for
    rc, _, err = _cli(["status", "2bfe", "--api-url", url, "--api-key", "afk_x"], monkeypatch)
    assert rc == 1 and "cannot reach the ARForge API" in err


def test_input_kinds_from_extensions_are_the_kinds_the_api_expects() -> None:
    from arforge.api.sniff import claimed_kinds
    from arforge.cli.inputs import KIND_BY_EXTENSION, kind_of

    for ext, kind in KIND_BY_EXTENSION.items():
        assert [k for k, _ in claimed_kinds(f"capture.{ext}", None)] == [kind], ext
    assert kind_of(Path("IMG_0001.JPG")) == "image"
    assert kind_of(Path("walk.MOV")) == "video"
    assert kind_of(Path("photos.zip")) == "images_zip"
    assert kind_of(Path("notes.txt")) is None and kind_of(Path("README")) is None


def test_the_pre_upload_check_validates_params_and_inputs_as_the_api_does() -> None:
    from arforge.cli.jobs import check_job, parse_params

    video = ["video"]
    check_job("photogrammetry", parse_params(["max_frames=1000", "quality=draft"]), 1, video)
    # the API validates the JSON it receives strictly: 1e3 is the float 1000.0
    for raw in ("max_frames=1e3", "max_frames=1000.0", "max_frames=true", 'max_frames="40"'):
        with pytest.raises(
            ValueError,
            match=r"^invalid params: params\.max_frames: Input should be a valid integer$",
        ):
            check_job("photogrammetry", parse_params([raw]), 1, video)
    with pytest.raises(ValueError, match=r"^invalid params: params\.max_frames: NaN and Infinity"):
        check_job("photogrammetry", parse_params(["max_frames=NaN"]), 1, video)
    with pytest.raises(ValueError, match=r"^invalid params: params\.colour: Extra inputs are not"):
        check_job("photogrammetry", {"colour": "red"}, 1, video)

    with pytest.raises(
        ValueError, match=r"^photogrammetry needs at least 3 overlapping photos, got 2$"
    ):
        check_job("photogrammetry", {}, 2, ["image", "image"])
    check_job("photogrammetry", {}, 3, ["image"] * 3)
    with pytest.raises(
        ValueError, match=r"^a video must be the only input of a photogrammetry job"
    ):
        check_job("photogrammetry", {}, 2, ["video", "image"])
    with pytest.raises(
        ValueError, match=r"^photogrammetry does not take glb inputs; it accepts image, images_zip"
    ):
        check_job("photogrammetry", {}, 1, ["glb"])
    # a file of unknown kind: only the count is checked here, the API judges the rest
    check_job("photogrammetry", {}, 2, ["image", None])
    with pytest.raises(ValueError, match=r"^photogrammetry takes 1 to 500 inputs, got 0$"):
        check_job("photogrammetry", {}, 0, [])


KILLED_STACK = """
import os, subprocess, sys, time
from pathlib import Path
from arforge.cli.stack import procs
from arforge.cli.stack.supervisor import ChildSpec, Supervisor
data = Path(sys.argv[1])
sup = Supervisor(data, say=lambda m: None)
procs.write_pid_file(sup.run_dir, "supervisor", os.getpid())
# Like a worker: drains on SIGTERM (the parent-death signal) while a compute child in its
# own session (arforge.shared.isolation) keeps going.
drain = (
    "import signal, subprocess, time\\n"
    "subprocess.Popen(['sleep', '1030'], start_new_session=True)\\n"
    "signal.signal(signal.SIGTERM, lambda *a: time.sleep(60))\\n"
    "print('ready', flush=True)\\n"
    "time.sleep(1000)\\n"
)
sup.start(ChildSpec(name="photogrammetry", argv=[sys.executable, "-c", drain]))
while "ready" not in (data / "logs" / "photogrammetry.log").read_text():
    time.sleep(0.01)
print("started", flush=True)
time.sleep(1000)
"""


def test_down_after_the_supervisor_was_killed_cleans_up_its_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    data = tmp_path / ".arforge"
    parent = subprocess.Popen(
        [sys.executable, "-c", KILLED_STACK, str(data)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == "started"
    rec = procs.read_pid_file(data / "run" / "photogrammetry.pid")
    assert rec is not None and rec.is_live_and_ours()
    deadline = time.monotonic() + 10
    while not procs.descendants(rec.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    tree = [rec.pid] + [p.pid for p in procs.descendants(rec.pid)]
    assert len(tree) == 2
    parent.kill()  # kill -9 `arforge up`
    parent.wait()
    try:
        time.sleep(0.3)
        assert rec.is_live_and_ours(), "the worker drains after its parent-death signal"

        rc, out, _ = _cli(["down", "--data-dir", str(data)], monkeypatch)

        assert (rc, out.strip()) == (
            0,
            f"cleaned up leftovers of a stack that was killed: photogrammetry (pid {rec.pid})",
        )
        assert [p for p in tree if procs.alive(p)] == []
        assert list((data / "run").glob("*.pid")) == []
        rc, out, _ = _cli(["down", "--data-dir", str(data)], monkeypatch)
        assert rc == 0 and out.startswith("no ARForge stack is running")
    finally:
        procs.clean_stale(data / "run")


def test_a_refused_up_leaves_no_directories_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import socket

    for name in [k for k in os.environ if k.startswith("ARFORGE_")]:
        monkeypatch.delenv(name)
    data = tmp_path / "dd2"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, _, err = _cli(["up", "--data-dir", str(data), "--api-port", str(port)], monkeypatch)
    assert rc == 1
    assert f"port {port} for the API is already in use; pass --api-port." in err
    assert not data.exists()
