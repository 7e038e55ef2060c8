"""Making ``arforge submit --idempotency-key K`` safe to repeat.

``POST /v1/jobs`` replays a job (200) only when the key comes with the same body, and the
body names upload ids, which are new on every upload. So before uploading, the CLI looks
for the job that already holds the key (the API has no lookup by key: the newest jobs are
listed and their ``idempotency_key`` compared) and, when that job's inputs have the same
SHA-256 as the local files (``GET /v1/uploads/{id}``), submits again with those upload
ids: the API then decides, from the whole body, between a replay and a 409.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .client import ApiError, Client

# How many of the newest jobs are searched for the key before uploading, and after a 409.
SCAN_BEFORE_UPLOAD = 1000
SCAN_AFTER_CONFLICT = 20_000
PAGE = 200


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes (read in ``chunk``-byte pieces)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_job_by_key(
    client: Client, key: str, max_jobs: int = SCAN_BEFORE_UPLOAD
) -> dict[str, Any] | None:
    """The caller's job submitted with Idempotency-Key ``key`` (a job dict), or ``None``
    when none of the newest ``max_jobs`` jobs has it. Pages through ``GET /v1/jobs``."""
    cursor: str | None = None
    seen = 0
    while seen < max_jobs:
        page = client.jobs(limit=min(PAGE, max_jobs - seen), cursor=cursor)
        items = page.get("items") or []
        for job in items:
            if job.get("idempotency_key") == key:
                return dict(job)
        seen += len(items)
        cursor = page.get("next_cursor")
        if not cursor or not items:
            return None
    return None


def matching_upload_ids(
    client: Client, job: dict[str, Any], sha256s: list[str]
) -> list[str] | None:
    """The upload ids of ``job``'s inputs, in order, when they are exactly the files with
    these hex SHA-256s (same count and order); else ``None``. An upload the API no longer
    knows (404) or that has no recorded hash does not match."""
    refs = job.get("inputs") or []
    if len(refs) != len(sha256s):
        return None
    ids = []
    for ref, digest in zip(refs, sha256s, strict=True):
        upload_id = str(ref.get("upload_id"))
        try:
            up = client.upload_info(upload_id)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        if up.get("sha256") != digest:
            return None
        ids.append(upload_id)
    return ids
