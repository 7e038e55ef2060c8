"""A worker-local mirror of the ``job_cancel`` KV bucket (pure bookkeeping, no I/O).

The worker subscribes to the bucket's subjects (``$KV.job_cancel.<job id>``) before it
loads the keys already there, feeding both into :class:`CancelMirror`; the check before a
job starts is then a set lookup instead of a KV request per job. A put seen live also
cancels a running job (the worker does that); running jobs still re-read the bucket on
every heartbeat, so a missed update costs at most one heartbeat interval.

Entries expire like the bucket's keys (``ttl_s``, 1 day): the server drops a key at its
TTL without telling subscribers, so the mirror forgets on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..bus.topology import CANCEL_TTL_S

#: header values of a KV delete / purge marker (``KV-Operation``)
REMOVALS = frozenset({"DEL", "PURGE"})


class CancelMirror:
    """Job ids whose cancellation was requested, as last seen on the bucket.

    ``clock`` is monotonic seconds (injectable for tests).
    """

    def __init__(
        self, ttl_s: float = CANCEL_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._seen: dict[str, float] = {}  # job id -> when first seen (clock)
        self._next_prune = clock() + ttl_s

    def load(self, job_ids: Iterable[str]) -> None:
        """Add the keys already in the bucket (read once at start-up)."""
        now = self.clock()
        for job_id in job_ids:
            self._seen.setdefault(job_id, now)

    def update(self, job_id: str, value: bytes, operation: str | None) -> bool:
        """Apply one bucket message; ``True`` when it requests a cancellation.

        ``operation`` is the message's ``KV-Operation`` header (``None`` for a put).
        """
        now = self.clock()
        if now >= self._next_prune:
            self._prune(now)
        if operation in REMOVALS or value != b"1":
            self._seen.pop(job_id, None)
            return False
        self._seen[job_id] = now
        return True

    def requested(self, job_id: str) -> bool:
        """Whether cancellation of ``job_id`` was requested (and has not expired)."""
        t = self._seen.get(job_id)
        return t is not None and self.clock() - t < self.ttl_s

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self, now: float) -> None:
        self._seen = {k: t for k, t in self._seen.items() if now - t < self.ttl_s}
        self._next_prune = now + self.ttl_s / 24
