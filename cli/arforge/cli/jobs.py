"""Client-side job commands: submit (with a live progress bar), status, list, cancel, dlq.

Output goes through a :class:`rich.console.Console`; functions return a process exit code
(0 success, 1 job failed / API error).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import idempotency
from .client import TERMINAL, ApiError, Client
from .inputs import kinds_of
from .tables import Fitted, fit_table

TERMINAL_EVENTS = {f"job.{s}" for s in TERMINAL}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["max_frames=40", "quality=draft"]`` -> ``{"max_frames": 40, "quality": "draft"}``.

    A value is parsed as JSON when it is valid JSON (numbers, booleans, lists, objects,
    quoted strings), else kept as a string. ``ValueError`` for an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--param needs KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".avif"})


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files to upload for ``--input`` values: a directory stands for its photos.

    A directory is replaced by the image files directly inside it (suffixes in
    ``IMAGE_SUFFIXES``, any case; hidden files skipped), sorted by name. ``ValueError``
    with a sentence for a path that does not exist, a directory without images, or
    something that is neither a file nor a directory.
    """
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            photos = sorted(
                f
                for f in p.iterdir()
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
            )
            if not photos:
                kinds = ", ".join(sorted(IMAGE_SUFFIXES))
                raise ValueError(f"input directory {p} holds no image files ({kinds})")
            out.extend(photos)
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise ValueError(f"input {p} is neither a file nor a directory")
        else:
            raise ValueError(f"input file not found: {p}")
    return out


def check_job(
    job_type: str,
    params: dict[str, Any],
    n_inputs: int,
    kinds: Sequence[str | None] | None = None,
) -> None:
    """Check a submission against the contracts (:mod:`arforge.shared.contracts`) locally,
    in the order and with the sentences of the API's ``POST /v1/jobs``.

    Raises ``ValueError`` with one sentence for an unknown job type, a type without a
    worker, params its model rejects (validated as the API does: the JSON text the API
    receives, in strict mode, so ``1e3`` (the float 1000.0) is not an integer), and
    ``n_inputs`` inputs that cannot make a job of the type. ``kinds``: the inputs' upload
    kinds (:func:`arforge.cli.inputs.kinds_of`); when all are known the type's
    ``input_problem`` judges them (accepted kinds, a video alone, at least 3 photos...),
    else only their count is checked. So nothing is uploaded for a job the API would
    refuse anyway; the API checks again on submit.
    """
    from pydantic import ValidationError

    from arforge.shared.contracts.registry import Registry

    registry = Registry()
    if job_type not in registry:
        raise ValueError(
            f"unknown job type {job_type!r}; known types: {', '.join(registry.types())}"
        )
    spec = registry[job_type]
    if not getattr(spec, "implemented", True):
        raise ValueError(f"job type {job_type!r} has no worker in this version of ARForge")
    params_json(params)  # NaN / Infinity: JSON cannot carry them to the API
    try:
        spec.validate_params(params)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(["params", *(str(p) for p in first["loc"])])
        raise ValueError(f"invalid params: {where}: {first['msg']}") from None
    problem = None
    if kinds is not None and len(kinds) == n_inputs and None not in kinds:
        problem = spec.input_problem([k for k in kinds if k is not None])
    elif not spec.min_inputs <= n_inputs <= spec.max_inputs:
        problem = f"{job_type} takes {spec.min_inputs} to {spec.max_inputs} inputs, got {n_inputs}"
    if problem is not None:
        raise ValueError(problem)


def params_json(params: dict[str, Any]) -> str:
    """``params`` as the JSON text the API receives (the client sends the body as JSON).

    ``ValueError`` naming the parameter whose value JSON cannot carry (NaN, Infinity).
    """
    for key, value in params.items():
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError(
                f"invalid params: params.{key}: NaN and Infinity are not JSON numbers"
            ) from None
    return json.dumps(params, allow_nan=False)


def job_duration_s(job: dict[str, Any]) -> float | None:
    """Seconds from ``started_at`` to ``finished_at`` of a job (ISO 8601); ``None`` if unknown."""
    try:
        start = datetime.fromisoformat(str(job["started_at"]))
        end = datetime.fromisoformat(str(job["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def result_warnings(job: dict[str, Any]) -> list[str]:
    """The ``warnings`` of a job's result (strings; ``[]`` when none or not a list)."""
    result = job.get("result")
    raw = result.get("warnings") if isinstance(result, dict) else None
    if not isinstance(raw, list):
        return []
    return [" ".join(str(w).split()) for w in raw if str(w).strip()]


def print_warnings(console: Console, job: dict[str, Any]) -> None:
    """One ``warning: ...`` line per result warning of a completed job."""
    if job.get("status") != "completed":
        return
    for w in result_warnings(job):
        console.print(f"[yellow]warning:[/] {escape(w)}")


def follow(
    client: Client,
    job_id: str,
    on_event: Callable[[str, dict[str, Any]], None],
    max_reconnects: int = 20,
    job: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Follow a job's SSE stream until a terminal event; return the final job.

    Events of earlier runs (before a retry or replay) are skipped. Reconnects with
    ``Last-Event-ID`` when the stream drops, and falls back to polling
    ``GET /v1/jobs/{id}`` if it cannot. The returned job is read after the terminal event
    (polled until the tracker has recorded the terminal status). ``job``: the job as just
    read (saves a request); read here when ``None``.
    """
    last_id: str | None = None
    drops = 0
    # History may hold an earlier run's terminal event (after a retry or a replay).
    run = int((job if job is not None else client.job(job_id)).get("run") or 1)
    while True:
        try:
            for ev in client.events(job_id, last_id):
                last_id = ev.id or last_id
                try:
                    env = json.loads(ev.data)
                except ValueError:
                    continue
                if not isinstance(env, dict):
                    continue
                kind = str(env.get("type") or ev.event)
                raw = env.get("data")
                data: dict[str, Any] = raw if isinstance(raw, dict) else {}
                if int(data.get("run") or run) < run:
                    continue
                on_event(kind, data)
                if kind in TERMINAL_EVENTS:
                    return client.wait_terminal(job_id, poll_s=0.3)
        except ApiError as e:
            if e.code != "unreachable" or drops >= max_reconnects:
                raise
        job = client.job(job_id)
        if job.get("status") in TERMINAL:
            return job
        drops += 1
        if drops > max_reconnects:
            return client.wait_terminal(job_id)
        time.sleep(min(drops, 5))


def _describe(kind: str, data: dict[str, Any]) -> str:
    status = str(data.get("status") or kind.removeprefix("job."))
    stage = data.get("stage")
    if kind == "job.retrying":
        err = data.get("error") or {}
        return f"retrying after {err.get('code', 'error')}: {err.get('message', '')}"[:100]
    return f"{status}: {stage}" if stage else status


def download_all(
    client: Client, job: dict[str, Any], out_root: Path, console: Console
) -> list[Path]:
    """Download every artifact of a completed job to ``out_root/<job_id>/``."""
    result = job.get("result") or {}
    paths = []
    for art in result.get("artifacts") or []:
        name = str(art.get("name"))
        path = client.download(str(job["id"]), name, out_root / str(job["id"]))
        paths.append(path)
    return paths


def submit(
    client: Client,
    console: Console,
    job_type: str,
    inputs: list[Path],
    params: dict[str, Any],
    priority: str,
    wait: bool,
    out_root: Path,
    idempotency_key: str | None = None,
) -> int:
    """Upload ``inputs``, submit the job, and with ``wait`` follow it and fetch artifacts.

    With ``idempotency_key`` the command can be repeated: when a job already holds the key
    and its inputs are the same files (SHA-256), nothing is uploaded and the API replays
    that job (see :mod:`arforge.cli.idempotency`); when its inputs differ, nothing is
    uploaded and the conflict is printed (exit 1). Exit 2 for inputs or params refused
    locally.
    """
    try:
        inputs = expand_inputs(inputs)
        check_job(job_type, params, len(inputs), kinds_of(inputs))
    except ValueError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        return 2
    hashes: list[str] = []
    upload_ids: list[str] | None = None
    if idempotency_key is not None:
        with console.status(f"checking idempotency key {idempotency_key!r}"):
            hashes = [idempotency.file_sha256(p) for p in inputs]
            earlier = idempotency.find_job_by_key(
                client, idempotency_key, idempotency.SCAN_BEFORE_UPLOAD
            )
            if earlier is not None:
                upload_ids = idempotency.matching_upload_ids(client, earlier, hashes)
        if earlier is not None and upload_ids is None:
            console.print(
                f"[red]error:[/] idempotency key {escape(idempotency_key)!r} was already used "
                f"for job {earlier.get('id')}, whose inputs are not these files; nothing "
                "was uploaded (use another key for a new job)"
            )
            return 1
        if earlier is not None:
            console.print(
                f"job {earlier.get('id')} already holds idempotency key "
                f"{escape(idempotency_key)!r} and has the same input files; not uploading again"
            )
    fresh = upload_ids is None
    if upload_ids is None:
        upload_ids = []
        for p in inputs:
            with console.status(f"uploading {p.name} ({p.stat().st_size / 1e6:.1f} MB)"):
                up = client.upload(p)
            console.print(f"uploaded {p.name} -> {up['id']} ({up.get('kind')}, {up.get('size')} B)")
            upload_ids.append(str(up["id"]))
    try:
        job = client.submit(job_type, upload_ids, params, priority, idempotency_key)
    except ApiError as e:
        if e.code != "idempotency_conflict" or idempotency_key is None:
            raise
        replayed = _conflict(
            client, console, e, job_type, params, priority, idempotency_key, hashes,
            upload_ids if fresh else None,
        )  # fmt: skip
        if replayed is None:
            return 1
        job = replayed
    job_id = str(job["id"])
    console.print(f"job {job_id} ({job_type}, priority {priority}) is {job.get('status')}")
    if not wait:
        print_warnings(console, job)
        console.print(f"follow it with: arforge status {job_id}")
        return 0
    return wait_and_fetch(client, console, job_id, out_root)


def _conflict(
    client: Client,
    console: Console,
    error: ApiError,
    job_type: str,
    params: dict[str, Any],
    priority: str,
    key: str,
    hashes: list[str],
    new_uploads: list[str] | None,
) -> dict[str, Any] | None:
    """Handle a 409 ``idempotency_conflict``: the replayed job, or ``None`` after printing
    why not. ``new_uploads``: the upload ids this command just made (``None`` when it
    reused an earlier job's, so the type, priority or params must differ)."""
    if new_uploads is None:
        console.print(
            f"[red]error:[/] idempotency key {escape(key)!r} was already used for a job with "
            f"the same input files but another type, priority or params ({error.message})"
        )
        return None
    # The key's job is older than the pre-upload search reached: the API names it (older
    # APIs did not: then search further).
    named = error.details.get("job_id")
    if named:
        earlier: dict[str, Any] | None = client.job(str(named))
    else:
        earlier = idempotency.find_job_by_key(client, key, idempotency.SCAN_AFTER_CONFLICT)
    ids = idempotency.matching_upload_ids(client, earlier, hashes) if earlier else None
    job = None
    if ids is not None:
        try:
            job = client.submit(job_type, ids, params, priority, key)
        except ApiError as e:
            if e.code != "idempotency_conflict":
                raise
    if job is not None:
        console.print(f"job {job['id']} already holds idempotency key {escape(key)!r}")
    else:
        which = f" (job {earlier.get('id')})" if earlier else ""
        console.print(
            f"[red]error:[/] idempotency key {escape(key)!r} was already used for another "
            f"request{which}: {escape(error.message)}"
        )
    console.print(
        "[yellow]note:[/] the uploads made by this command are unused (the API cannot "
        f"delete uploads): {', '.join(new_uploads)}"
    )
    return job


def wait_and_fetch(client: Client, console: Console, job_id: str, out_root: Path) -> int:
    """Show a live progress bar until the job ends; download artifacts when it completes.

    ``job_id`` may be a unique prefix (:meth:`Client.resolve_job_id`). The job is read
    first, so an unknown id fails (:class:`ApiError` ``not_found``) before anything is
    drawn, and a job that already ended gets no bar. Exit 0 when the job completed (its
    result warnings are printed), 1 when it failed or was cancelled, 130 when interrupted.
    """
    job_id = client.resolve_job_id(job_id)
    job = client.job(job_id)
    if job.get("status") not in TERMINAL:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            prog = job.get("progress") or {}
            start = prog.get("fraction")
            task = bar.add_task(_describe(f"job.{job.get('status')}", prog), total=1.0)
            if isinstance(start, int | float):
                bar.update(task, completed=max(0.0, min(1.0, float(start))))

            def on_event(kind: str, data: dict[str, Any]) -> None:
                fraction = data.get("fraction")
                update: dict[str, Any] = {"description": _describe(kind, data)}
                if isinstance(fraction, int | float):
                    update["completed"] = max(0.0, min(1.0, float(fraction)))
                if kind == "job.completed":
                    update["completed"] = 1.0
                bar.update(task, **update)

            try:
                job = follow(client, job_id, on_event, job=job)
            except KeyboardInterrupt:
                bar.stop()
                console.print(
                    f"\nstopped waiting; job {job_id} goes on (arforge status {job_id}, "
                    f"arforge cancel {job_id})"
                )
                return 130
    took = job_duration_s(job)
    status = job.get("status")
    if status == "cancelled":
        after = f" after {took:.1f} s of running" if took is not None else ""
        console.print(f"[yellow]job {job_id} cancelled[/]{after}")
        return 1
    if status != "completed":
        err = job.get("error") or {}
        after = f" after {took:.1f} s" if took is not None else ""
        why = f": {err.get('code')}: {err.get('message', '')}" if err.get("code") else ""
        console.print(f"[red]job {job_id} {status}[/]{after}{escape(why)}")
        return 1
    paths = download_all(client, job, out_root, console)
    took_text = f" in {took:.1f} s" if took is not None else ""
    warned = result_warnings(job)
    with_warnings = f" with {len(warned)} warning{'s' * (len(warned) != 1)}" if warned else ""
    colour = "yellow" if warned else "green"
    console.print(f"[{colour}]job {job_id} completed{with_warnings}[/]{took_text}; artifacts:")
    for p in paths:
        console.print(f"  {p}")
    if not paths:
        console.print("  (none)")
    print_warnings(console, job)
    return 0


def _fmt_progress(job: dict[str, Any]) -> str:
    prog = job.get("progress") or {}
    frac = prog.get("fraction")
    stage = prog.get("stage") or ""
    if isinstance(frac, int | float):
        return f"{frac * 100:.0f}% {stage}".strip()
    return stage


def _fmt_time(value: object) -> str:
    """An ISO 8601 timestamp as local ``MM-DD HH:MM:SS``; other values unchanged."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def status(client: Client, console: Console, job_id: str, as_json: bool) -> int:
    """Print one job (``--json``: the API's JSON); ``job_id`` may be a unique prefix."""
    job = client.job(job_id)
    if as_json:
        console.print_json(json.dumps(job))
        return 0
    t = Table(show_header=False, box=None)
    for key in ("id", "type", "priority", "status", "run", "attempt"):
        t.add_row(key, str(job.get(key)))
    t.add_row("progress", _fmt_progress(job))
    for key in ("created_at", "started_at", "finished_at"):
        if job.get(key):
            t.add_row(key, str(job[key]))
    if job.get("error"):
        err = job["error"]
        t.add_row("error", f"{err.get('code')}: {err.get('message')}")
    console.print(t)
    for art in (job.get("result") or {}).get("artifacts") or []:
        size, ctype = art.get("size"), art.get("content_type")
        console.print(f"  artifact {escape(str(art.get('name')))} ({size} B, {ctype})")
    print_warnings(console, job)
    return 0


def table_width(console: Console, wide: bool) -> int | None:
    """The width tables must fit: the terminal's, or ``None`` (no limit) with ``--wide`` or
    when the output is not a terminal (piped), so scripts get whole cells."""
    return None if wide or not console.is_terminal else console.width


def _print_table(console: Console, fitted: Fitted) -> None:
    for text in fitted.lines:
        console.print(text, markup=False, highlight=False, crop=False, soft_wrap=True)
    if fitted.ids_shortened:
        console.print("[dim](ids shortened; --wide or --json shows them whole)[/]")


def list_jobs(
    client: Client,
    console: Console,
    job_type: str | None,
    status_filter: str | None,
    limit: int,
    as_json: bool,
    cursor: str | None = None,
    wide: bool = False,
) -> int:
    """Print one page of jobs, newest first, as a table (``--json``: the API's page).

    ``cursor`` is the ``next_cursor`` of the previous page. At the terminal's width the
    status column is never cut and ids are shortened to 8 characters only when needed.
    """
    page = client.jobs(job_type, status_filter, limit, cursor)
    items = page.get("items") or []
    if as_json:
        console.print_json(json.dumps(page))
        return 0
    if not items:
        console.print("no jobs")
        return 0
    rows = [
        [
            str(j.get("id")),
            str(j.get("type")),
            str(j.get("priority")),
            str(j.get("status")),
            _fmt_progress(j),
            _fmt_time(j.get("created_at")),
        ]
        for j in items
    ]
    headers = ["id", "type", "prio", "status", "progress", "created"]
    _print_table(console, fit_table(headers, rows, table_width(console, wide), keep={3, 5}))
    if page.get("next_cursor"):
        console.print(f"(more: --cursor {page['next_cursor']})", markup=False, crop=False)
    return 0


def dlq_list(client: Client, console: Console, as_json: bool, wide: bool = False) -> int:
    """Print the dead letters as a table (``--json``: the API's page); the reason column
    is never cut, ids are shortened to 8 characters only when needed."""
    page = client.dead_letters()
    items = page.get("items") or []
    if as_json:
        console.print_json(json.dumps(page))
        return 0
    if not items:
        console.print("no dead letters")
        return 0
    rows = []
    for d in items:
        err = d.get("last_error")
        if isinstance(err, dict):
            err = f"{err.get('code')}: {err.get('message')}"
        rows.append(
            [
                str(d.get("job_id") or d.get("id")),
                str(d.get("type", "")),
                str(d.get("attempts", "")),
                str(d.get("reason", "")),
                str(err or ""),
            ]
        )
    headers = ["job", "type", "tries", "reason", "last error"]
    _print_table(console, fit_table(headers, rows, table_width(console, wide), keep={2, 3}))
    return 0
