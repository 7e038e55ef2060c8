"""A worker-local mirror of the ``job_cancel`` KV bucket (pure bookkeeping, no I/O).

The bucket maps a job id to the highest cancelled run of that job (ASCII decimal): runs up
to it are cancelled, a later run (a retry) is not. The worker subscribes to the bucket's
subjects (``$KV.job_cancel.<job id>``) before it loads the values already there, feeding
both into :class:`CancelMirror`; the check before a job starts is then a dict lookup
instead of a KV request per job. A value seen live also cancels a running job (the worker
does that); running jobs still re-read the bucket on every heartbeat, so a missed update
costs at most one heartbeat interval.

Entries expire like the bucket's keys (``ttl_s``, 1 day): the server drops a key at its
TTL without telling subscribers, so the mirror forgets on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from ..bus.client import parse_cancel_value
from ..bus.topology import CANCEL_TTL_S

#: header values of a KV delete / purge marker (``KV-Operation``)
REMOVALS = frozenset({"DEL", "PURGE"})


class CancelMirror:
    """Per job id, the highest cancelled run, as last seen on the bucket.

    ``clock`` is monotonic seconds (injectable for tests).
    """

    def __init__(
        self, ttl_s: float = CANCEL_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._runs: dict[str, tuple[int, float]] = {}  # job id -> (run, when seen)
        self._next_prune = clock() + ttl_s

    def load(self, cancelled: Mapping[str, int]) -> None:
        """Add the bucket's values read at start-up (``job id -> run``); live updates that
        arrived meanwhile are kept when they name a later run."""
        now = self.clock()
        for job_id, run in cancelled.items():
            if run > self.through(job_id):
                self._runs[job_id] = (run, now)

    def update(self, job_id: str, value: bytes, operation: str | None) -> int:
        """Apply one bucket message; returns the job's highest cancelled run (0: none).

        ``operation`` is the message's ``KV-Operation`` header (``None`` for a put).
        """
        now = self.clock()
        if now >= self._next_prune:
            self._prune(now)
        run = 0 if operation in REMOVALS else parse_cancel_value(value)
        if run <= 0:
            self._runs.pop(job_id, None)
            return 0
        self._runs[job_id] = (run, now)
        return run

    def through(self, job_id: str) -> int:
        """The job's highest cancelled run (0 when none, or when the entry expired)."""
        entry = self._runs.get(job_id)
        if entry is None or self.clock() - entry[1] >= self.ttl_s:
            return 0
        return entry[0]

    def requested(self, job_id: str, run: int) -> bool:
        """Whether run ``run`` of ``job_id`` is cancelled."""
        return run <= self.through(job_id)

    def __len__(self) -> int:
        return len(self._runs)

    def _prune(self, now: float) -> None:
        self._runs = {k: v for k, v in self._runs.items() if now - v[1] < self.ttl_s}
        self._next_prune = now + self.ttl_s / 24
