"""What a handler sees of a job: :class:`JobContext` (no NATS in here)."""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from .. import isolation
from ..contracts import Artifact, JobMessage, JobSpec
from ..errors import JobFailed
from ..storage.base import ObjectNotFound, ObjectStore
from . import workdirs

ProgressSink = Callable[[float, str], None]


class JobContext:
    """One attempt of one job, as given to ``handler(ctx, params)``.

    Attributes: ``job`` (:class:`JobMessage`), ``spec``, ``attempt`` (1-based),
    ``workdir`` (a private directory, removed after the attempt), ``store``, ``log``.
    """

    def __init__(
        self,
        *,
        job: JobMessage,
        spec: JobSpec,
        attempt: int,
        workdir: Path,
        store: ObjectStore,
        progress_sink: ProgressSink,
    ) -> None:
        self.job = job
        self.spec = spec
        self.attempt = attempt
        self._workdir = workdir
        self.store = store
        self.log = structlog.get_logger("arforge.job")
        self._sink = progress_sink
        self.started = time.monotonic()
        self.workdir_used = False  # the runtime removes the workdir only if it was handed out

    @property
    def workdir(self) -> Path:
        """This attempt's private directory, created on first use (owned by this process:
        a worker starting after this one was killed removes it, see :mod:`.workdirs`)."""
        if not self.workdir_used:
            workdirs.claim(self._workdir)
        self.workdir_used = True
        return self._workdir

    @property
    def job_id(self) -> str:
        return self.job.job_id

    def progress(self, fraction: float, stage: str) -> None:
        """Report progress: ``fraction`` in [0, 1] of the whole job, ``stage`` a short name.

        Cheap to call often; the runtime throttles events to about one a second and
        always sends a stage change.
        """
        self._sink(min(max(float(fraction), 0.0), 1.0), stage)

    def sub_progress(self, start: float, end: float) -> ProgressSink:
        """A progress callback mapping a step's own [0, 1] onto [start, end] of the job."""

        def report(fraction: float, stage: str) -> None:
            self.progress(start + (end - start) * min(max(fraction, 0.0), 1.0), stage)

        return report

    async def fetch_inputs(self) -> list[Path]:
        """Download every input to ``workdir/inputs``; returns local paths in input order.

        Raises ``JobFailed("input_missing")`` (not retried) when an input's object is no
        longer in storage.
        """
        dest = self.workdir / "inputs"
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, ref in enumerate(self.job.inputs):
            ext = Path(ref.key).suffix
            try:
                paths.append(await self.store.get_file(ref.key, dest / f"{i:04d}{ext}"))
            except ObjectNotFound:
                raise JobFailed(
                    "input_missing",
                    f"The file of upload {ref.upload_id} is no longer in storage; upload it "
                    "again and submit a new job.",
                    {"upload_id": ref.upload_id, "key": ref.key},
                ) from None
        return paths

    def artifact_key(self, name: str) -> str:
        return f"jobs/{self.job.job_id}/{name}"

    async def put_artifact(
        self, name: str, path: Path, content_type: str | None = None
    ) -> Artifact:
        """Store ``path`` as artifact ``name`` under the deterministic key
        ``jobs/<job_id>/<name>`` (a rerun overwrites, never duplicates)."""
        ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        obj = await self.store.put_file(self.artifact_key(name), path, content_type=ctype)
        return Artifact(
            name=name, key=obj.key, content_type=ctype, size=obj.size, sha256=digest.hexdigest()
        )

    async def run_isolated(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, on_progress=..., **kwargs)`` in a killable child process group.

        Progress from the child is forwarded to :meth:`progress` unless ``on_progress``
        is given. See :func:`arforge.shared.isolation.run_isolated` for errors.
        """
        kwargs.setdefault("on_progress", self.progress)
        on_progress = kwargs.pop("on_progress")
        return await isolation.run_isolated(fn, *args, on_progress=on_progress, **kwargs)

    async def run_process(
        self, argv: Sequence[str], *, cwd: str | None = None
    ) -> tuple[int, bytes, bytes]:
        """Run a command in its own process group (killed on cancel or timeout)."""
        return await isolation.run_process(argv, cwd=cwd or str(self.workdir))
