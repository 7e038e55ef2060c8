"""A small synchronous client for the ARForge REST API (httpx).

Every failure becomes :class:`ApiError` with the API's machine-readable ``code`` and its
sentence (``{"error": {"code", "message"}}``), or ``code="unreachable"`` when no API
answers. Artifacts may come back as a 307 to a presigned URL; httpx drops the
``Authorization`` header when a redirect leaves the API's origin.
"""

from __future__ import annotations

import json
import mimetypes
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from . import ids, sse

TERMINAL = ("completed", "failed", "cancelled")


class ApiError(RuntimeError):
    """An API error: HTTP ``status`` (0 when unreachable), ``code``, ``message`` and the
    error's ``details`` object (empty when it has none)."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{message} ({code}{f', HTTP {status}' if status else ''})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def safe_name(name: str) -> str:
    """An artifact name usable as a file name: no directories, no control characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "_", base).strip()
    if base in ("", ".", ".."):
        base = "artifact"
    return base[:200]


class Client:
    """The API at ``base_url`` with bearer ``key``."""

    def __init__(self, base_url: str, key: str | None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------
    def _error(self, r: httpx.Response) -> ApiError:
        try:
            body = r.json()
            err = body["error"]
            details = err.get("details")
            return ApiError(
                r.status_code,
                str(err.get("code")),
                str(err.get("message")),
                details if isinstance(details, dict) else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            text = r.text.strip().replace("\n", " ")[:200]
            return ApiError(r.status_code, "http_error", text or r.reason_phrase)

    def _unreachable(self, e: httpx.HTTPError) -> ApiError:
        return ApiError(
            0,
            "unreachable",
            f"cannot reach the ARForge API at {self.base_url} ({type(e).__name__}: {e}); "
            "is `arforge up` running?",
        )

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Send a request; raise :class:`ApiError` on a 4xx / 5xx or a connection failure."""
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        if r.status_code >= 400:
            raise self._error(r)
        return r

    # -- routes --------------------------------------------------------------------------
    def upload(self, path: Path) -> dict[str, Any]:
        """``POST /v1/uploads`` with the file streamed as multipart field ``file``."""
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as f:
            r = self.request(
                "POST", "/v1/uploads", files={"file": (path.name, f, ctype)}, timeout=None
            )
        return dict(r.json())

    def upload_info(self, upload_id: str) -> dict[str, Any]:
        """``GET /v1/uploads/{id}``: ``{"id", "kind", "size", "sha256", ...}``; 404 as
        :class:`ApiError` ``not_found``."""
        return dict(self.request("GET", f"/v1/uploads/{quote(upload_id, safe='')}").json())

    def submit(
        self,
        job_type: str,
        inputs: list[str],
        params: dict[str, Any],
        priority: str = "default",
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/jobs``; returns the job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"type": job_type, "priority": priority, "inputs": inputs, "params": params}
        return dict(self.request("POST", "/v1/jobs", json=body, headers=headers).json())

    # -- job ids -----------------------------------------------------------------------
    def resolve_job_id(self, ref: str) -> str:
        """The whole id of the caller's job that ``ref`` names: a UUID as given, or a unique
        prefix of at least 4 hex digits looked up among the newest 2000 jobs
        (:mod:`arforge.cli.ids`). ``ValueError`` for a too-short or ambiguous prefix,
        :class:`ApiError` ``not_found`` when no job matches."""
        return self._resolve(ref, lambda cursor, n: self.jobs(limit=n, cursor=cursor), "job")

    def resolve_dead_letter_id(self, ref: str) -> str:
        """Like :meth:`resolve_job_id`, among the dead letters awaiting replay (their
        ``job_id``, as ``arforge dlq list`` shows them)."""

        def pages(cursor: str | None, n: int) -> dict[str, Any]:
            return self.dead_letters(limit=n, cursor=cursor)

        return self._resolve(ref, pages, "dead letter", field="job_id")

    def _resolve(self, ref: str, pages: ids.Pages, what: str, field: str = "id") -> str:
        try:
            return ids.resolve(ref, pages, field=field, what=what)
        except LookupError as e:
            raise ApiError(404, "not_found", str(e)) from None

    # -- routes taking a job id (a whole id or a unique prefix) --------------------------
    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``; ``job_id`` may be a unique prefix."""
        path = f"/v1/jobs/{_seg(self.resolve_job_id(job_id))}"
        return dict(self.request("GET", path).json())

    def jobs(
        self,
        job_type: str | None = None,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page: ``{"items": [...], "next_cursor": str | None}``."""
        params = {"type": job_type, "status": status, "limit": limit, "cursor": cursor}
        clean = {k: v for k, v in params.items() if v is not None}
        return dict(self.request("GET", "/v1/jobs", params=clean).json())

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/cancel``; ``job_id`` may be a unique prefix."""
        path = f"/v1/jobs/{_seg(self.resolve_job_id(job_id))}/cancel"
        return _json_or_empty(self.request("POST", path))

    def retry(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/retry``; ``job_id`` may be a unique prefix."""
        path = f"/v1/jobs/{_seg(self.resolve_job_id(job_id))}/retry"
        return _json_or_empty(self.request("POST", path))

    def dead_letters(self, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of the dead letters awaiting replay, newest first:
        ``{"items": [...], "next_cursor": str | None}`` (the API's page size by default)."""
        params = {k: v for k, v in {"limit": limit, "cursor": cursor}.items() if v is not None}
        return dict(self.request("GET", "/v1/dead-letters", params=params).json())

    def replay(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/dead-letters/{job_id}/replay``; ``job_id`` may be a unique prefix of a
        dead letter awaiting replay."""
        path = f"/v1/dead-letters/{_seg(self.resolve_dead_letter_id(job_id))}/replay"
        return _json_or_empty(self.request("POST", path))

    def events(self, job_id: str, last_event_id: str | None = None) -> Iterator[sse.SseEvent]:
        """Stream ``GET /v1/jobs/{id}/events`` until the server closes it."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(60.0, read=None)
        try:
            with self.http.stream(
                "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self._error(r)
                yield from sse.parse(r.iter_lines())
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e

    def download(self, job_id: str, name: str, dest_dir: Path) -> Path:
        """Save artifact ``name`` under ``dest_dir`` (following a presigned redirect)."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        target = dest_dir / safe_name(name)
        tmp = target.with_name(target.name + ".part")
        try:
            with self.http.stream(
                "GET",
                f"/v1/jobs/{quote(job_id, safe='')}/artifacts/{quote(name, safe='')}",
                follow_redirects=True,
                timeout=None,
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self._error(r)
                with tmp.open("wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        tmp.replace(target)
        return target

    def wait_terminal(self, job_id: str, poll_s: float = 1.0) -> dict[str, Any]:
        """Poll ``GET /v1/jobs/{id}`` until the job is completed, failed or cancelled."""
        while True:
            job = self.job(job_id)
            if job.get("status") in TERMINAL:
                return job
            time.sleep(poll_s)


def _seg(value: str) -> str:
    """``value`` as one URL path segment."""
    return quote(value, safe="")


def _json_or_empty(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except json.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {"result": body}
