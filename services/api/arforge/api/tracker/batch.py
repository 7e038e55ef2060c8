"""Planning a batch of lifecycle events as set-based writes (pure, no I/O).

The spec is :func:`arforge.api.tracker.store.record_event` applied to each event in order;
the batch path must end in exactly the same rows. :func:`pending_events` picks the events
that path would try to store (valid job id, first occurrence of each event id) and
:func:`plan_batch` folds :func:`~arforge.api.tracker.state.decide` over each job's newly
stored events, starting from its locked row, into one write per job.

Folding in memory skips the round trip through the ``jobs`` row between two events, so the
state is put through what storing and re-reading would do to it (:func:`as_stored`):
``progress`` is a ``real`` (float4) column and timestamps come back as UTC-aware values.
"""

from __future__ import annotations

import logging
import struct
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from arforge.shared.contracts import Event

from .state import Decision, JobState, apply, decide

log = logging.getLogger("arforge.api.tracker")

#: The tracked ``jobs`` columns, in the order the batch UPDATE takes them, with their
#: :class:`JobState` field.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "status"),
    ("run", "run"),
    ("attempt", "attempt"),
    ("progress", "progress"),
    ("progress_stage", "stage"),
    ("result", "result"),
    ("error_code", "error_code"),
    ("error_message", "error_message"),
    ("dead_lettered", "dead_lettered"),
    ("started_at", "started_at"),
    ("finished_at", "finished_at"),
)
WRITABLE = frozenset(c for c, _ in COLUMNS)
_BIT = {c: 1 << i for i, (c, _) in enumerate(COLUMNS)}


def job_uuid(event: Event) -> uuid.UUID | None:
    """The job id of a ``job.*`` event (``subject``, else ``data.job_id``), or ``None``."""
    for raw in (event.subject, event.data.get("job_id")):
        try:
            return uuid.UUID(str(raw))
        except (ValueError, TypeError):
            continue
    return None


@dataclass(frozen=True)
class Pending:
    """An event to insert into ``job_events``, with its parsed job id."""

    event: Event
    job_id: uuid.UUID


def pending_events(events: Iterable[Event]) -> list[Pending]:
    """The events of a batch that ``record_event`` one by one would try to insert, in order.

    An event with no valid job id is skipped with a warning (as ``record_event`` does);
    of several events with the same id only the first is kept (the later ones would hit
    ``ON CONFLICT DO NOTHING``). An event skipped for its job id does not shadow a later
    one with the same id and a valid job id.
    """
    out: list[Pending] = []
    seen: set[str] = set()
    for event in events:
        job_id = job_uuid(event)
        if job_id is None:
            log.warning(
                "event %s has no valid job id (subject %r); skipped", event.id, event.subject
            )
            continue
        if event.id in seen:
            continue
        seen.add(event.id)
        out.append(Pending(event, job_id))
    return out


def _float4(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _utc(t: datetime | None) -> datetime | None:
    # asyncpg sends a naive datetime as local time and timestamptz comes back in UTC
    return None if t is None else t.astimezone(UTC)


def as_stored(state: JobState) -> JobState:
    """``state`` as it reads back after writing it to ``jobs`` (float4 progress, UTC times)."""
    return replace(
        state,
        progress=_float4(state.progress),
        started_at=_utc(state.started_at),
        finished_at=_utc(state.finished_at),
    )


@dataclass
class JobWrite:
    """The folded state of one job and the columns any of its events changed."""

    state: JobState
    columns: set[str] = field(default_factory=set)

    @property
    def mask(self) -> int:
        """Bit ``i`` set when ``COLUMNS[i]`` is to be written."""
        return sum(_BIT[c] for c in self.columns)

    def values(self) -> tuple[Any, ...]:
        """The folded values in ``COLUMNS`` order."""
        return tuple(getattr(self.state, f) for _, f in COLUMNS)


@dataclass
class BatchPlan:
    """What one batch writes: per-job updates, dead-letter rows in order, and the decision
    for each newly stored event (``Decision(why="unknown job")`` where its job has no row)."""

    writes: dict[uuid.UUID, JobWrite] = field(default_factory=dict)
    dead_letters: list[tuple[uuid.UUID, dict[str, Any]]] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)


def plan_batch(rows: Mapping[uuid.UUID, JobState], new: Iterable[Pending]) -> BatchPlan:
    """Fold the newly stored events ``new`` (batch order) over their jobs' ``rows``.

    ``rows`` holds the locked state of every existing job among ``new``; an event whose job
    is missing changes nothing. Only jobs with at least one non-empty change are in
    ``writes`` (``record_event`` updates exactly those, bumping ``updated_at``).
    """
    plan = BatchPlan()
    states = dict(rows)
    for p in new:
        state = states.get(p.job_id)
        if state is None:
            log.warning(
                "event %s for unknown job %s stored without a job update", p.event.id, p.job_id
            )
            plan.decisions[p.event.id] = Decision(why="unknown job")
            continue
        decision = decide(state, p.event)
        plan.decisions[p.event.id] = decision
        cols = [c for c in decision.changes if c in WRITABLE]
        if cols:
            changes = {c: decision.changes[c] for c in cols}
            state = as_stored(apply(state, Decision(changes=changes)))
            states[p.job_id] = state
            write = plan.writes.setdefault(p.job_id, JobWrite(state))
            write.state = state
            write.columns.update(cols)
        if decision.dead_letter:
            plan.dead_letters.append((p.job_id, decision.dead_letter))
    return plan
