"""The `arforge` job commands against a real API (uvicorn on a free port, real PostgreSQL and
nats-server). No worker runs: the tests record the worker's events themselves."""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from media_samples import encode_video
from rich.console import Console

from arforge.api.app import create_app
from arforge.api.testing import api_settings, new_tenant_key
from arforge.api.tracker.store import record_event
from arforge.cli import idempotency, main
from arforge.shared.contracts import job_event
from tests.conftest import free_port

TRUNCATED = "the video is truncated (upload incomplete?): 41 of 60 s could be read"
SPLIT = "the model came out in 2 parts; only the largest (38 of 40 images) is kept"


@dataclass
class Run:
    rc: int
    out: str
    err: str


@dataclass
class Api:
    app: Any
    url: str
    key: str
    monkeypatch: pytest.MonkeyPatch

    async def cli(self, *argv: str, width: int = 300, terminal: bool = False) -> Run:
        """``arforge ARGV`` in a thread, its stdout / stderr captured."""
        out, err = io.StringIO(), io.StringIO()
        kw: dict[str, Any] = {"width": width, "force_terminal": terminal, "color_system": None}
        kw |= {"highlight": False, "soft_wrap": True}  # as arforge.cli.main's consoles
        self.monkeypatch.setattr(main, "console", Console(file=out, **kw))
        self.monkeypatch.setattr(main, "err_console", Console(file=err, **kw))
        full = [*argv, "--api-url", self.url, "--api-key", self.key]
        rc = await asyncio.to_thread(main.main, full)
        return Run(rc, out.getvalue(), err.getvalue())

    async def count(self, table: str) -> int:
        return int(await self.app.state.pool.fetchval(f"SELECT count(*) FROM {table}"))

    async def job_ids(self) -> list[str]:
        rows = await self.app.state.pool.fetch("SELECT id FROM jobs ORDER BY created_at, id")
        return [str(r["id"]) for r in rows]

    async def record(self, job_id: str, status: str, **data: Any) -> None:
        """Record a worker event for the job (as the tracker would)."""
        pool = self.app.state.pool
        row = await pool.fetchrow(
            "SELECT type, tenant_id, run FROM jobs WHERE id = $1", uuid.UUID(job_id)
        )
        ref = {
            "job_id": job_id,
            "type": row["type"],
            "tenant_id": str(row["tenant_id"]),
            "run": row["run"],
        }
        async with pool.acquire() as conn:
            await record_event(conn, job_event(status, ref, source="test", attempt=1, **data))

    async def complete(self, job_id: str, warnings: list[str]) -> None:
        await self.record(job_id, "started")
        await self.record(job_id, "completed", result={"artifacts": [], "warnings": warnings})


@pytest.fixture
async def api(  # type: ignore[no-untyped-def]
    nats_server, fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Api]:
    for name in ("ARFORGE_DATA_DIR", "ARFORGE_API_URL", "ARFORGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    app = create_app(api_settings(nats_server.url, fresh_db, tmp_path / "store"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn failed to start"
            await asyncio.sleep(0.05)
        headers = await new_tenant_key(app)
        key = headers["Authorization"].split(" ", 1)[1]
        yield Api(app, f"http://127.0.0.1:{port}", key, monkeypatch)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return encode_video(tmp_path / "clip.mp4", fmt="mp4")


async def test_status_wait_and_submit_wait_show_result_warnings(
    api: Api, clip: Path, tmp_path: Path
) -> None:
    r = await api.cli("submit", "photogrammetry", "--input", str(clip))
    assert r.rc == 0, r.err
    [job_id] = await api.job_ids()
    await api.complete(job_id, [TRUNCATED])

    r = await api.cli("status", job_id)
    assert r.rc == 0
    assert r.out.splitlines()[-1] == f"warning: {TRUNCATED}"
    r = await api.cli("status", job_id, "--json")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api.key}"}) as http:
        assert json.loads(r.out) == (await http.get(f"{api.url}/v1/jobs/{job_id}")).json()
    assert "warning:" not in r.out

    r = await api.cli("wait", job_id, "--output-dir", str(tmp_path / "out"))
    assert r.rc == 0
    assert f"job {job_id} completed with 1 warning" in r.out
    assert r.out.splitlines()[-1] == f"warning: {TRUNCATED}"

    # submit --wait: the job completes while the CLI follows it
    follow = asyncio.create_task(
        api.cli("submit", "photogrammetry", "--input", str(clip), "--wait",
                "--output-dir", str(tmp_path / "out"))
    )  # fmt: skip
    for _ in range(200):
        ids = await api.job_ids()
        if len(ids) == 2:
            break
        await asyncio.sleep(0.05)
    new_id = ids[1]
    await api.complete(new_id, [TRUNCATED, SPLIT])
    r = await asyncio.wait_for(follow, 60)
    assert r.rc == 0, r.err
    assert f"job {new_id} completed with 2 warnings" in r.out
    assert r.out.splitlines()[-2:] == [f"warning: {TRUNCATED}", f"warning: {SPLIT}"]


async def _more_jobs(api: Api, n: int) -> None:
    """``n`` more jobs on the upload of the first one (the API allows reusing uploads)."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api.key}"}) as http:
        first = (await http.get(f"{api.url}/v1/jobs")).json()["items"][-1]
        upload = first["inputs"][0]["upload_id"]
        for _ in range(n):
            body = {"type": "photogrammetry", "inputs": [upload]}
            assert (await http.post(f"{api.url}/v1/jobs", json=body)).status_code == 201


async def test_jobs_pages_with_cursor_and_fits_80_columns(api: Api, clip: Path) -> None:
    assert (await api.cli("submit", "photogrammetry", "--input", str(clip))).rc == 0
    await _more_jobs(api, 2)
    oldest, middle, newest = await api.job_ids()
    await api.complete(oldest, [])
    await api.record(middle, "started")
    await api.record(middle, "progress", seq=1, fraction=0.45, stage="dense reconstruction")

    # piped: whole ids, nothing cut
    r = await api.cli("jobs", "--limit", "2")
    rows = [line.split() for line in r.out.splitlines()[2:4]]
    assert [(row[0], row[3]) for row in rows] == [(newest, "queued"), (middle, "started")]
    m = re.search(r"^\(more: --cursor (\S+)\)$", r.out, re.M)
    assert m is not None
    r = await api.cli("jobs", "--limit", "2", "--cursor", m.group(1))
    assert r.rc == 0, r.err
    [row] = [line.split() for line in r.out.splitlines()[2:]]
    assert (row[0], row[3]) == (oldest, "completed")
    assert "(more" not in r.out

    # an 80-column terminal: status whole, ids cut to 8 characters, a hint to see them
    r = await api.cli("jobs", width=80, terminal=True)
    lines = r.out.splitlines()
    assert max(map(len, lines)) <= 80
    assert lines[0].split() == ["id", "type", "prio", "status", "progress", "created"]
    got = [(line.split()[0], line.split()[3]) for line in lines[2:5]]
    assert got == [(newest[:8], "queued"), (middle[:8], "started"), (oldest[:8], "completed")]
    assert "photogrammetry" in lines[3] and "45% dense" in lines[3]
    assert lines[5] == "(ids shortened; --wide or --json shows them whole)"
    r = await api.cli("jobs", "--wide", width=80, terminal=True)
    assert [line.split()[0] for line in r.out.splitlines()[2:5]] == [newest, middle, oldest]
    assert "ids shortened" not in r.out


async def test_dlq_list_fits_80_columns(api: Api, clip: Path) -> None:
    assert (await api.cli("submit", "photogrammetry", "--input", str(clip))).rc == 0
    [job_id] = await api.job_ids()
    err = "native_crash: compute process died with SIGABRT while meshing the dense cloud"
    await api.record(job_id, "started")
    await api.record(job_id, "failed", error={"code": "native_crash", "message": err})
    await api.record(
        job_id, "dead_lettered", reason="attempts_exhausted", attempts=4, last_error=err
    )
    r = await api.cli("dlq", "list", width=80, terminal=True)
    lines = r.out.splitlines()
    assert max(map(len, lines)) <= 80
    assert lines[0].split() == ["job", "type", "tries", "reason", "last", "error"]
    assert lines[2].split()[:4] == [job_id[:8], "photogrammetry", "4", "attempts_exhausted"]
    assert lines[2].endswith("…")
    r = await api.cli("dlq", "list", "--wide", width=80, terminal=True)
    assert r.out.splitlines()[2].split()[0] == job_id and err in r.out


async def test_wait_for_an_unknown_job_draws_nothing(api: Api) -> None:
    for job_id in ("nope", str(uuid.uuid4())):
        r = await api.cli("wait", job_id)
        assert r.rc == 1
        assert r.out == ""
        assert r.err.strip() == "error: job not found (not_found)"


async def test_repeating_a_submit_with_an_idempotency_key_is_safe(
    api: Api, clip: Path, tmp_path: Path
) -> None:
    argv = ["submit", "photogrammetry", "--input", str(clip), "--idempotency-key", "cli-1"]
    assert (await api.cli(*argv)).rc == 0
    [job_id] = await api.job_ids()
    assert await api.count("uploads") == 1

    r = await api.cli(*argv)
    assert r.rc == 0, r.out + r.err
    assert f"job {job_id} already holds idempotency key 'cli-1'" in r.out
    assert f"job {job_id} (photogrammetry, priority default) is queued" in r.out
    assert (await api.count("jobs"), await api.count("uploads")) == (1, 1)

    # other files with the key: refused, and nothing uploaded
    other = encode_video(tmp_path / "other.mp4", fmt="mp4", frames=14)
    r = await api.cli("submit", "photogrammetry", "--input", str(other),
                      "--idempotency-key", "cli-1")  # fmt: skip
    assert r.rc == 1
    assert f"was already used for job {job_id}, whose inputs are not these files" in r.out
    assert (await api.count("jobs"), await api.count("uploads")) == (1, 1)

    # same files, other params: the API's 409, and nothing uploaded
    r = await api.cli(*argv, "--param", "quality=draft")
    assert r.rc == 1
    assert "another type, priority or params" in r.out
    assert (await api.count("jobs"), await api.count("uploads")) == (1, 1)

    # the key's job is older than the search before uploading reaches: the file is
    # uploaded, the 409 leads to a wider search, and the job is still replayed
    await _more_jobs(api, 1)
    api.monkeypatch.setattr(idempotency, "SCAN_BEFORE_UPLOAD", 1)
    r = await api.cli(*argv)
    assert r.rc == 0, r.out + r.err
    assert f"job {job_id} already holds idempotency key 'cli-1'" in r.out
    assert "the uploads made by this command are unused" in r.out
    assert (await api.count("jobs"), await api.count("uploads")) == (2, 2)


async def test_keys_create_checks_the_tenant_name_length(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    url = api.app.state.settings.database_url
    tenants = await api.count("tenants")
    r = await api.cli("keys", "create", "--tenant", "x" * 300, "--database-url", url)
    assert r.rc == 2
    assert r.err.strip().splitlines() == [
        "error: --tenant is 300 characters long; tenant names have 1 to 200 characters"
    ]
    assert await api.count("tenants") == tenants
    r = await api.cli("keys", "create", "--tenant", "x" * 200, "--database-url", url)
    assert r.rc == 0, r.err
    assert r.out.startswith(f"API key for tenant {'x' * 200} (shown once")
    assert capsys.readouterr().out.startswith("afk_")  # the key itself: plain print()
    assert await api.count("tenants") == tenants + 1


async def test_keys_list_and_revoke(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    url = api.app.state.settings.database_url
    pool = api.app.state.pool
    r = await api.cli("keys", "create", "--tenant", "acme", "--database-url", url)
    assert r.rc == 0, r.err
    key = capsys.readouterr().out.strip()
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/v1/jobs", headers=auth)).status_code == 200
        used = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE prefix = $1", key[:12])
        assert used is not None
        # within a minute another request does not write the row again
        assert (await http.get("/v1/jobs", headers=auth)).status_code == 200
        assert (
            await pool.fetchval("SELECT last_used_at FROM api_keys WHERE prefix = $1", key[:12])
            == used
        )

        r = await api.cli("keys", "list", "--tenant", "acme", "--json", "--database-url", url)
        assert r.rc == 0, r.err
        listed = json.loads(r.out)
        assert [(k["tenant"], k["prefix"], k["revoked_at"]) for k in listed] == [
            ("acme", key[:12], None)
        ]
        assert listed[0]["last_used_at"] is not None and key not in r.out
        r = await api.cli("keys", "list", "--database-url", url)  # every tenant, as a table
        lines = r.out.splitlines()
        assert lines[0].split() == ["id", "tenant", "prefix", "created", "last", "used", "revoked"]
        assert len(lines) == 2 + 2  # the fixture's tenant key and acme's
        assert any(key[:12] in ln and ln.rstrip().endswith("-") for ln in lines[2:])

        r = await api.cli("keys", "revoke", key[:12], "--database-url", url)
        assert r.rc == 0, r.err
        assert f"API key {key[:12]}… of tenant acme is revoked" in r.out
        refused = await http.get("/v1/jobs", headers=auth)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        first = await pool.fetchval("SELECT revoked_at FROM api_keys WHERE prefix = $1", key[:12])
        r = await api.cli("keys", "revoke", listed[0]["id"], "--database-url", url)  # by id
        assert r.rc == 0
        assert (
            await pool.fetchval("SELECT revoked_at FROM api_keys WHERE prefix = $1", key[:12])
            == first
        )
        # the API key of the fixture still works
        assert (
            await http.get("/v1/jobs", headers={"Authorization": f"Bearer {api.key}"})
        ).status_code == 200

    r = await api.cli("keys", "revoke", "afk_nothere", "--database-url", url)
    assert r.rc == 1 and "no API key has the id or prefix 'afk_nothere'" in r.err
    await pool.execute("UPDATE api_keys SET prefix = 'afk_same1234'")
    r = await api.cli("keys", "revoke", "afk_same1234", "--database-url", url)
    assert r.rc == 2 and "2 API keys have the prefix 'afk_same1234'" in r.err


async def test_last_used_is_bumped_once_it_is_a_minute_old(api: Api) -> None:
    from arforge.api.auth import tenant_for_key

    pool = api.app.state.pool
    await pool.execute("UPDATE api_keys SET last_used_at = now() - interval '2 minutes'")
    before = await pool.fetchval("SELECT last_used_at FROM api_keys")
    tenant = await tenant_for_key(pool, api.key)
    assert tenant is not None
    after = await pool.fetchval("SELECT last_used_at FROM api_keys")
    assert (after - before).total_seconds() > 100


# --- job ids: a unique prefix works wherever a job id does -----------------------------------
AAAA = "abcd1234-aaaa-4000-8000-000000000001"
BBBB = "abcd1234-bbbb-4000-8000-000000000002"


async def _copy_job(api: Api, source: str, new_id: str) -> None:
    """A job row with a chosen id (so that two ids share a prefix), copied from ``source``."""
    await api.app.state.pool.execute(
        "INSERT INTO jobs (id, tenant_id, type, priority, params, inputs)"
        " SELECT $1, tenant_id, type, priority, params, inputs FROM jobs WHERE id = $2",
        uuid.UUID(new_id),
        uuid.UUID(source),
    )


async def _job_row(api: Api, job_id: str) -> tuple[str, int]:
    row = await api.app.state.pool.fetchrow(
        "SELECT status, run FROM jobs WHERE id = $1", uuid.UUID(job_id)
    )
    return str(row["status"]), int(row["run"])


def _unused_prefix(ids: list[str]) -> str:
    return next(
        p for p in ("dead", "beef", "cafe", "f00d") if not any(i.startswith(p) for i in ids)
    )


async def test_commands_take_a_unique_id_prefix(api: Api, clip: Path, tmp_path: Path) -> None:
    assert (await api.cli("submit", "photogrammetry", "--input", str(clip))).rc == 0
    await _more_jobs(api, 2)
    first, second, third = await api.job_ids()

    # status: the 8 characters `arforge jobs` shows at a narrow terminal
    r = await api.cli("status", first[:8])
    assert r.rc == 0, r.err
    assert r.out.splitlines()[0].split() == ["id", first]
    r = await api.cli("status", second[:13].upper(), "--json")  # any case, with the hyphen
    assert r.rc == 0, r.err
    assert json.loads(r.out)["id"] == second

    # cancel, then retry, by prefix: only that job changes
    r = await api.cli("cancel", third[:6])
    assert r.rc == 0, r.err
    assert r.out.strip() == f"cancellation requested for job {third}"  # the whole id
    assert [await _job_row(api, j) for j in (first, second, third)] == [
        ("queued", 1), ("queued", 1), ("cancelled", 1)
    ]  # fmt: skip
    r = await api.cli("retry", third.replace("-", "")[:10])  # hyphens may be left out
    assert r.rc == 0, r.err
    assert r.out.strip() == f"job {third} queued again"
    assert await _job_row(api, third) == ("queued", 2)

    # wait: messages name the whole id
    await api.complete(first, [])
    r = await api.cli("wait", first[:5], "--output-dir", str(tmp_path / "out"))
    assert r.rc == 0, r.err
    assert f"job {first} completed" in r.out

    # two ids sharing a prefix: refused in one line listing both, nothing changed
    await _copy_job(api, second, AAAA)
    await _copy_job(api, second, BBBB)
    for argv in (("status", "abcd"), ("cancel", "abcd1234"), ("retry", "ABCD1234-")):
        r = await api.cli(*argv)
        assert r.rc == 2, (argv, r.out, r.err)
        assert r.err.splitlines() == [
            f"error: id prefix {argv[1]!r} matches 2 jobs: {BBBB}, {AAAA}; give more characters"
        ]
    assert await _job_row(api, AAAA) == ("queued", 1)
    assert await _job_row(api, BBBB) == ("queued", 1)
    r = await api.cli("cancel", "abcd1234-b")
    assert r.rc == 0, r.err
    assert (await _job_row(api, BBBB), await _job_row(api, AAAA)) == (
        ("cancelled", 1), ("queued", 1)
    )  # fmt: skip

    # no match: the prefix is named; a whole unknown id still answers as the API does
    ids = await api.job_ids()
    unused = _unused_prefix(ids)
    for cmd in ("status", "wait", "cancel", "retry"):
        r = await api.cli(cmd, unused)
        assert r.rc == 1, (cmd, r.err)
        assert r.err.splitlines() == [f"error: no job matches the id prefix {unused!r} (not_found)"]
    r = await api.cli("status", str(uuid.uuid4()))
    assert (r.rc, r.err.strip()) == (1, "error: job not found (not_found)")
    r = await api.cli("status", "abc")
    assert r.rc == 2
    assert r.err.strip() == (
        "error: job id prefix 'abc' is too short; give at least 4 characters of the id "
        "(or the whole id)"
    )


async def test_the_prefix_search_is_capped_and_says_so(api: Api, clip: Path) -> None:
    from arforge.cli import ids

    assert (await api.cli("submit", "photogrammetry", "--input", str(clip))).rc == 0
    await _more_jobs(api, 4)
    oldest, *_rest, newest = await api.job_ids()
    api.monkeypatch.setattr(ids, "SCAN_LIMIT", 3)
    api.monkeypatch.setattr(ids, "PAGE", 2)  # two pages: 2 jobs, then 1
    r = await api.cli("status", newest[:8])
    assert r.rc == 0, r.err
    r = await api.cli("status", oldest[:8])
    assert r.rc == 1
    assert r.err.splitlines() == [
        f"error: no job matches the id prefix {oldest[:8]!r} among your newest 3 jobs (the "
        "search goes no further; give the whole id) (not_found)"
    ]
    r = await api.cli("status", oldest)  # a whole id needs no search
    assert r.rc == 0, r.err


async def test_dlq_replay_takes_a_prefix_among_dead_letters(api: Api, clip: Path) -> None:
    assert (await api.cli("submit", "photogrammetry", "--input", str(clip))).rc == 0
    [job_id] = await api.job_ids()
    await _copy_job(api, job_id, AAAA)
    await _copy_job(api, job_id, BBBB)
    await api.record(AAAA, "started")
    await api.record(AAAA, "failed", error={"code": "native_crash", "message": "SIGABRT"})
    await api.record(AAAA, "dead_lettered", reason="attempts_exhausted", attempts=4)
    pool = api.app.state.pool

    # "abcd" names two jobs but one dead letter
    r = await api.cli("status", "abcd")
    assert r.rc == 2 and "matches 2 jobs" in r.err
    r = await api.cli("dlq", "replay", "abcd")
    assert r.rc == 0, r.err
    assert r.out.strip() == f"dead letter {AAAA} replayed"
    replayed = await pool.fetchval(
        "SELECT replayed_at FROM dead_letters WHERE job_id = $1", uuid.UUID(AAAA)
    )
    assert replayed is not None
    assert await _job_row(api, AAAA) == ("queued", 2)

    # replayed dead letters are no longer listed, so no longer found
    r = await api.cli("dlq", "replay", "abcd")
    assert r.rc == 1
    assert r.err.splitlines() == ["error: no dead letter matches the id prefix 'abcd' (not_found)"]
    assert await _job_row(api, BBBB) == ("queued", 1)


# --- the pre-upload check says what the API would say ----------------------------------------
async def _api_refusal(api: Api, files: list[Path], params: dict[str, Any]) -> str:
    """The API's error message for a photogrammetry job of ``files`` with ``params``."""
    async with httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Bearer {api.key}"}
    ) as http:
        ids = []
        for f in files:
            up = await http.post("/v1/uploads", files={"file": (f.name, f.read_bytes())})
            assert up.status_code == 201, up.text
            ids.append(up.json()["id"])
        body = {"type": "photogrammetry", "inputs": ids, "params": params}
        r = await http.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    return str(r.json()["error"]["message"])


def _photos(folder: Path, n: int) -> Path:
    from media_samples import image_bytes

    folder.mkdir()
    for i in range(n):
        (folder / f"p{i:02d}.jpg").write_bytes(image_bytes("JPEG"))
    return folder


async def test_params_the_api_refuses_are_refused_before_uploading(
    api: Api, tmp_path: Path
) -> None:
    photos = _photos(tmp_path / "photos", 10)
    # 1e3 is the JSON number 1000.0: valid for a lax int, refused by the API (strict)
    r = await api.cli("submit", "photogrammetry", "--input", str(photos),
                      "--param", "max_frames=1e3")  # fmt: skip
    assert r.rc == 2, r.out + r.err
    assert r.out.splitlines() == [
        "error: invalid params: params.max_frames: Input should be a valid integer"
    ]
    r2 = await api.cli("submit", "photogrammetry", "--input", str(photos),
                       "--param", "max_frames=true")  # fmt: skip
    assert (r2.rc, r2.out) == (2, r.out)
    assert (await api.count("uploads"), await api.count("jobs")) == (0, 0)
    said = await _api_refusal(api, sorted(photos.iterdir())[:3], {"max_frames": 1000.0})
    assert r.out.strip() == f"error: {said}"

    r = await api.cli("submit", "photogrammetry", "--input", str(photos),
                      "--param", "max_frames=1000")  # fmt: skip
    assert r.rc == 0, r.out + r.err
    assert await api.count("jobs") == 1


async def test_inputs_the_api_refuses_are_refused_before_uploading(
    api: Api, clip: Path, tmp_path: Path
) -> None:
    two = _photos(tmp_path / "two", 2)
    r = await api.cli("submit", "photogrammetry", "--input", str(two))
    assert r.rc == 2, r.out + r.err
    assert r.out.splitlines() == [
        "error: photogrammetry needs at least 3 overlapping photos, got 2"
    ]
    r2 = await api.cli("submit", "photogrammetry", "--input", str(clip), "--input", str(two))
    assert r2.rc == 2
    assert r2.out.splitlines() == [
        "error: a video must be the only input of a photogrammetry job; give one video, or a "
        "set of photos, not both"
    ]
    assert (await api.count("uploads"), await api.count("jobs")) == (0, 0)
    said = await _api_refusal(api, sorted(two.iterdir()), {})
    assert r.out.strip() == f"error: {said}"
