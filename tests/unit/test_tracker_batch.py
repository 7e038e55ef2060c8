"""The tracker's batch planner: which events a batch stores, and folding them per job."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta, timezone

from arforge.api.tracker.batch import (
    COLUMNS,
    Pending,
    as_stored,
    pending_events,
    plan_batch,
)
from arforge.api.tracker.state import JobState, apply, decide
from arforge.shared.contracts import Event, job_event

JOB = uuid.UUID("7d9c0b1e-1111-4222-8333-944455556666")
OTHER = uuid.UUID("0d9c0b1e-1111-4222-8333-944455556666")
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def ev(
    status: str, attempt: int = 0, *, job: uuid.UUID = JOB, at: int = 0, **data: object
) -> Event:
    ref = {"job_id": str(job), "type": "mesh", "tenant_id": "t1", "run": 1}
    e = job_event(status, ref, source="test", attempt=attempt, **data)
    return e.model_copy(update={"time": T0 + timedelta(seconds=at)})


def float4(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def test_pending_skips_bad_job_ids_and_keeps_first_of_each_id() -> None:
    a = ev("started", 1)
    a_again = a.model_copy(update={"data": {**a.data, "attempt": 9}})
    no_job = ev("queued").model_copy(update={"id": "x", "subject": "nope", "data": {}})
    # same id as no_job but with a usable id in data: record_event would store this one
    via_data = no_job.model_copy(update={"data": {"job_id": str(OTHER)}})
    got = pending_events([a, no_job, a_again, via_data, via_data])
    assert got == [Pending(a, JOB), Pending(via_data, OTHER)]
    assert got[0].event.data["attempt"] == 1


def test_plan_folds_each_job_in_order_and_marks_changed_columns() -> None:
    events = [
        ev("started", 1, at=1),
        ev("started", 1, job=OTHER, at=2),
        ev("progress", 1, at=3, seq=1, fraction=0.5, stage="sfm"),
        ev("completed", 1, at=4, result={"a": {"b": [1, None]}}),
    ]
    rows = {JOB: JobState(), OTHER: JobState(status="completed", finished_at=T0)}
    plan = plan_batch(rows, pending_events(events))

    expected = JobState()
    for e in events:
        if e.subject == str(JOB):
            expected = as_stored(apply(expected, decide(expected, e)))
    assert plan.writes[JOB].state == expected
    assert expected.status == "completed" and expected.result == {"a": {"b": [1, None]}}
    # started lowers started_at on a terminal run too, so OTHER is written, but only there
    assert plan.writes[OTHER].columns == {"started_at"}
    assert plan.writes[OTHER].state.status == "completed"
    assert plan.decisions[events[1].id].why == "run already terminal"
    names = [c for c, _ in COLUMNS]
    mask = plan.writes[OTHER].mask
    assert [n for i, n in enumerate(names) if mask >> i & 1] == ["started_at"]
    assert len(plan.writes[JOB].values()) == len(COLUMNS)


def test_progress_is_compared_as_the_float4_the_row_would_hold() -> None:
    # 0.6 is stored as float4(0.6) > 0.6000000001: the second progress must not apply
    first = ev("progress", 1, at=1, seq=1, fraction=0.6, stage="a")
    second = ev("progress", 1, at=2, seq=2, fraction=0.6000000001, stage="b")
    plan = plan_batch({JOB: JobState()}, pending_events([first, second]))
    state = plan.writes[JOB].state
    assert (state.progress, state.stage) == (float4(0.6), "a")
    assert plan.decisions[second.id].changes == {}


def test_as_stored_gives_utc_times_and_float4_progress() -> None:
    plus2 = timezone(timedelta(hours=2))
    s = as_stored(JobState(progress=0.1, started_at=datetime(2025, 1, 1, 14, tzinfo=plus2)))
    assert s.progress == float4(0.1) != 0.1
    assert s.started_at == datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert s.started_at is not None and s.started_at.tzinfo is UTC
    assert s.finished_at is None


def test_unknown_jobs_and_dead_letters() -> None:
    dl = ev("dead_lettered", 3, reason="crash_loop", attempts=3, last_error="boom")
    lost = ev("started", 1, job=OTHER)
    plan = plan_batch({JOB: JobState()}, pending_events([dl, lost, dl]))
    assert plan.dead_letters == [
        (JOB, {"run": 1, "reason": "crash_loop", "attempts": 3, "last_error": "boom"})
    ]
    assert plan.writes[JOB].columns == {"dead_lettered"}
    assert OTHER not in plan.writes
    assert plan.decisions[lost.id].why == "unknown job"
