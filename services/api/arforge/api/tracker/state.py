"""The job state machine the tracker applies to each lifecycle event (pure, no I/O).

Delivery is at-least-once and events of different attempts may arrive out of order, so a
job's status only moves *forward* along the order key

    (run, rank, attempt, phase)

with rank queued=0 < started=progress=retrying=1 < completed=failed=cancelled=2 and, to
break ties within one attempt, phase queued=0 < started=progress=1 < retrying=2 <
terminal=3 (an attempt's ``retrying`` comes after its ``started``). An event whose key is
not greater than the job's current key changes nothing, except:

* ``progress`` with the same key raises the fraction (never lowers it) and sets the stage;
* any ``started`` / ``progress`` of the current run lowers ``started_at`` to its time;
* once a run is terminal, nothing of that run changes the status again (first terminal
  event wins), so a late ``retrying`` never overwrites ``completed``;
* ``dead_lettered`` of the current run sets ``dead_lettered`` and yields a dead-letter row.

Events of an older run never change anything: a manual retry / replay (``run + 1``)
supersedes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from arforge.shared.contracts import TERMINAL, Event

RANK = {"queued": 0, "started": 1, "progress": 1, "retrying": 1}
PHASE = {"queued": 0, "started": 1, "progress": 1, "retrying": 2}
TERMINAL_RANK = 2
TERMINAL_PHASE = 3
STATUS_EVENTS = frozenset({"queued", "started", "progress", "retrying", *TERMINAL})


@dataclass(frozen=True)
class JobState:
    """The tracked columns of a ``jobs`` row."""

    status: str = "queued"
    run: int = 1
    attempt: int = 0
    progress: float = 0.0
    stage: str | None = None
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    dead_lettered: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class Decision:
    """What to write for one event: column changes and an optional dead-letter row."""

    changes: dict[str, Any] = field(default_factory=dict)
    dead_letter: dict[str, Any] | None = None
    why: str = "applied"


def order_key(status: str, run: int, attempt: int) -> tuple[int, int, int, int]:
    """The forward-only order of job states and status events (see module docstring)."""
    if status in TERMINAL:
        return (run, TERMINAL_RANK, 0, TERMINAL_PHASE)
    return (run, RANK[status], attempt, PHASE[status])


def _status_of(event: Event) -> str:
    return event.type.removeprefix("job.")


def _error(data: dict[str, Any]) -> tuple[str | None, str | None]:
    err = data.get("error") or {}
    if not isinstance(err, dict):
        return "error", str(err)
    return err.get("code") or "error", err.get("message") or ""


def decide(state: JobState, event: Event) -> Decision:
    """The changes ``event`` (a ``job.<status>`` event) makes to a job in ``state``."""
    status = _status_of(event)
    data = event.data
    run = int(data.get("run", 1))
    attempt = int(data.get("attempt", 0))
    if run < state.run:
        return Decision(why="older run")
    if status == "dead_lettered":
        if run != state.run:
            return Decision(why="dead letter of another run")
        return Decision(
            changes={} if state.dead_lettered else {"dead_lettered": True},
            dead_letter={
                "run": run,
                "reason": str(data.get("reason") or "attempts_exhausted"),
                "attempts": int(data.get("attempts") or attempt or 0),
                "last_error": data.get("last_error"),
            },
        )
    if status not in STATUS_EVENTS:
        return Decision(why=f"not a status event: {event.type}")

    changes: dict[str, Any] = {}
    if (
        status in ("started", "progress")
        and run == state.run
        and (state.started_at is None or event.time < state.started_at)
    ):
        changes["started_at"] = event.time

    current = order_key(state.status, state.run, state.attempt)
    new = order_key(status, run, attempt)
    if state.status in TERMINAL and run == state.run:
        return Decision(changes=changes, why="run already terminal")
    if new < current:
        return Decision(changes=changes, why="stale")
    if new == current:
        if status == "progress":
            fraction = _fraction(data)
            if fraction > state.progress:
                changes["progress"] = fraction
                changes["progress_stage"] = data.get("stage")
        return Decision(changes=changes, why="same state" if not changes else "progress")

    changes.update({"status": status, "run": run})
    if status != "queued":
        changes["attempt"] = attempt
    if status == "queued":
        changes.update(attempt=0, progress=0.0, progress_stage=None)
    elif status == "started":
        changes.update(progress=0.0, progress_stage=None, error_code=None, error_message=None)
    elif status == "progress":
        changes.update(
            status="started",
            progress=_fraction(data),
            progress_stage=data.get("stage"),
            error_code=None,
            error_message=None,
        )
    elif status == "retrying":
        code, msg = _error(data)
        changes.update(progress=0.0, progress_stage=None, error_code=code, error_message=msg)
    elif status == "completed":
        changes.update(
            progress=1.0,
            progress_stage=None,
            result=data.get("result") or {},
            error_code=None,
            error_message=None,
            finished_at=event.time,
        )
    elif status == "failed":
        code, msg = _error(data)
        changes.update(error_code=code, error_message=msg, finished_at=event.time)
    elif status == "cancelled":
        changes.update(error_code=None, error_message=None, finished_at=event.time)
    if run > state.run:  # a newer run than the row knows: reset the per-run fields
        changes.setdefault("result", None)
        changes.setdefault("error_code", None)
        changes.setdefault("error_message", None)
        changes.setdefault("finished_at", None)
        changes["dead_lettered"] = False
        changes["started_at"] = event.time if status in ("started", "progress") else None
    return Decision(changes=changes)


def _fraction(data: dict[str, Any]) -> float:
    try:
        f = float(data.get("fraction", 0.0))
    except (TypeError, ValueError):
        return 0.0
    return min(1.0, max(0.0, f)) if f == f else 0.0  # NaN -> 0


_FIELD_OF_COLUMN = {"progress_stage": "stage"}


def apply(state: JobState, decision: Decision) -> JobState:
    """``state`` with ``decision.changes`` applied (for folding events in tests / replays)."""
    upd = {_FIELD_OF_COLUMN.get(k, k): v for k, v in decision.changes.items()}
    return replace(state, **upd)


def fold(state: JobState, events: list[Event]) -> JobState:
    """Apply ``events`` in order, ignoring duplicate ids (as the tracker does)."""
    seen: set[str] = set()
    for ev in events:
        if ev.id in seen:
            continue
        seen.add(ev.id)
        state = apply(state, decide(state, ev))
    return state
