"""CLI behaviour a fresh user meets without a running API: finding `.arforge` from a
subdirectory, `arforge down`, `arforge keys create` checks."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from arforge.cli import config, main
from arforge.cli.stack import procs


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
