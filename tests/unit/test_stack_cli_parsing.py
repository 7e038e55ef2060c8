"""CLI pieces that need no server: --param parsing, the SSE parser, config lookup, names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arforge.cli import config, sse
from arforge.cli.client import safe_name
from arforge.cli.jobs import parse_params
from arforge.cli.main import build_parser


def test_params_parse_as_json_when_they_can() -> None:
    got = parse_params(
        ["max_frames=40", "quality=draft", "ratio=0.5", "flag=true", "lods=[1, 0.5]", "eq=a=b"]
    )
    assert got == {
        "max_frames": 40,
        "quality": "draft",
        "ratio": 0.5,
        "flag": True,
        "lods": [1, 0.5],
        "eq": "a=b",
    }
    assert parse_params(['name="40"']) == {"name": "40"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["max_frames"])


def test_sse_parser_follows_the_event_stream_format() -> None:
    env = {"id": "e1", "type": "job.progress", "data": {"fraction": 0.25, "stage": "sfm"}}
    lines = [
        ": keep-alive",
        "id: 7",
        "event: job.progress",
        "data: " + json.dumps(env),
        "",
        "data: first",
        "data:second",
        "",
        "",
        "retry: 1000",
        "data: tail-without-blank-line",
    ]
    events = list(sse.parse(lines))
    assert events[0] == sse.SseEvent(data=json.dumps(env), event="job.progress", id="7")
    assert json.loads(events[0].data)["data"]["fraction"] == 0.25
    assert events[1] == sse.SseEvent(data="first\nsecond", event="message", id="7")
    assert events[2].data == "tail-without-blank-line"
    assert len(events) == 3


def test_artifact_names_cannot_escape_the_output_directory() -> None:
    assert safe_name("model.glb") == "model.glb"
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\x.usdz") == "x.usdz"
    assert safe_name("..") == "artifact"
    assert safe_name("a\x00b\nc") == "a_b_c"


def test_client_config_order_flags_env_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARFORGE_API_URL", raising=False)
    monkeypatch.delenv("ARFORGE_API_KEY", raising=False)
    monkeypatch.delenv("ARFORGE_DATA_DIR", raising=False)
    d = tmp_path / "data"
    d.mkdir()
    assert config.client_config(str(d), None, None) == config.ClientConfig(
        config.DEFAULT_API_URL, None
    )
    (d / "api-url").write_text("http://127.0.0.1:9999/\n")
    (d / "api-key").write_text("afk_file\n")
    assert config.client_config(str(d), None, None) == config.ClientConfig(
        "http://127.0.0.1:9999", "afk_file"
    )
    monkeypatch.setenv("ARFORGE_API_KEY", "afk_env")
    monkeypatch.setenv("ARFORGE_DATA_DIR", str(d))
    assert config.client_config(None, None, None).api_key == "afk_env"
    assert config.client_config(None, "http://x:1", "afk_flag") == config.ClientConfig(
        "http://x:1", "afk_flag"
    )
    with pytest.raises(config.ConfigError, match="no API key"):
        config.ClientConfig("http://x", None).require_key()


def test_database_url_for_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARFORGE_DATABASE_URL", raising=False)
    with pytest.raises(config.ConfigError, match="no database URL"):
        config.database_url(str(tmp_path), None)
    (tmp_path / "stack.json").write_text(json.dumps({"database_url": "postgresql://s/db"}))
    assert config.database_url(str(tmp_path), None) == "postgresql://s/db"
    monkeypatch.setenv("ARFORGE_DATABASE_URL", "postgresql://e/db")
    assert config.database_url(str(tmp_path), None) == "postgresql://e/db"
    assert config.database_url(str(tmp_path), "postgresql://f/db") == "postgresql://f/db"


def test_global_options_work_after_the_command() -> None:
    p = build_parser()
    a = p.parse_args(["jobs", "--api-url", "http://h:1", "--limit", "5"])
    assert a.api_url == "http://h:1" and a.limit == 5
    a = p.parse_args(["--data-dir", "/d", "submit", "photogrammetry", "--input", "x.mp4"])
    assert a.data_dir == "/d" and a.input == ["x.mp4"] and a.priority == "default"
    a = p.parse_args(["up"])
    assert (a.nats_port, a.api_port) == (4333, 8000)
    with pytest.raises(SystemExit):
        p.parse_args(["submit", "photogrammetry", "--input", "x", "--priority", "urgent"])


def test_directory_inputs_expand_to_their_photos_sorted(tmp_path: Path) -> None:
    from arforge.cli.jobs import expand_inputs

    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("b.JPG", "a.jpg", "c.png", "notes.txt", ".hidden.jpg"):
        (shots / name).write_bytes(b"x")
    (shots / "sub").mkdir()
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    got = expand_inputs([shots, video])
    assert [p.name for p in got] == ["a.jpg", "b.JPG", "c.png", "v.mp4"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"input directory .*empty holds no image files"):
        expand_inputs([empty])
    with pytest.raises(ValueError, match="input file not found"):
        expand_inputs([tmp_path / "missing.mp4"])


def test_job_duration_comes_from_the_job_timestamps() -> None:
    from arforge.cli.jobs import job_duration_s

    job = {"started_at": "2025-01-02T03:04:05.5+00:00", "finished_at": "2025-01-02T03:06:07+00:00"}
    assert job_duration_s(job) == pytest.approx(121.5)
    assert job_duration_s({"started_at": None, "finished_at": "2025-01-02T03:06:07+00:00"}) is None
    assert job_duration_s({}) is None


def test_submissions_are_checked_against_the_contracts_before_upload() -> None:
    from arforge.cli.jobs import check_job

    check_job("photogrammetry", {"max_frames": 40, "quality": "draft"}, 1)
    with pytest.raises(ValueError, match="max_frames: Input should be greater than or equal to 3"):
        check_job("photogrammetry", {"max_frames": -1}, 1)
    with pytest.raises(ValueError, match=r"unknown job type 'nope'; known types: .*photogrammetry"):
        check_job("nope", {}, 1)
    with pytest.raises(ValueError, match="colour: Extra inputs are not permitted"):
        check_job("photogrammetry", {"colour": "red"}, 1)
    with pytest.raises(ValueError, match="takes 1 to 500 inputs, got 0"):
        check_job("photogrammetry", {}, 0)
    with pytest.raises(ValueError, match="'mesh' has no worker in this version"):
        check_job("mesh", {}, 1)
