"""The tracker's pure state machine: duplicates and any arrival order give one final state."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from arforge.api.tracker.state import JobState, decide, fold, order_key
from arforge.shared.contracts import Event, job_event

JOB = {"job_id": "7d9c0b1e-1111-4222-8333-944455556666", "type": "mesh", "tenant_id": "t1"}
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def ev(
    status: str,
    attempt: int = 0,
    *,
    run: int = 1,
    at: int = 0,
    seq: int | None = None,
    **data: object,
) -> Event:
    e = job_event(status, {**JOB, "run": run}, source="test", attempt=attempt, seq=seq, **data)
    return e.model_copy(update={"time": T0 + timedelta(seconds=at)})


def history() -> list[Event]:
    """queued -> a1 started, progress, retrying -> a2 started, progress x2 -> completed."""
    return [
        ev("queued"),
        ev("started", 1, at=1),
        ev("progress", 1, at=2, seq=1, fraction=0.3, stage="sfm"),
        ev("retrying", 1, at=3, error={"code": "native_crash", "message": "SIGABRT"}),
        ev("started", 2, at=4),
        ev("progress", 2, at=5, seq=1, fraction=0.4, stage="sfm"),
        ev("progress", 2, at=6, seq=2, fraction=0.8, stage="mvs"),
        ev("completed", 2, at=7, result={"artifacts": [], "lod_faces": {"high": 10}}),
    ]


def test_in_order_history_ends_completed() -> None:
    s = fold(JobState(), history())
    assert (s.status, s.run, s.attempt, s.progress) == ("completed", 1, 2, 1.0)
    assert s.result == {"artifacts": [], "lod_faces": {"high": 10}}
    assert s.error_code is None
    assert s.started_at == T0 + timedelta(seconds=1)
    assert s.finished_at == T0 + timedelta(seconds=7)


def test_every_order_and_duplicates_give_the_same_final_state() -> None:
    events = history()
    expected = fold(JobState(), events)
    rng = random.Random(7)
    for _ in range(300):
        shuffled = events + rng.sample(events, 3)  # duplicates too
        rng.shuffle(shuffled)
        got = fold(JobState(), shuffled)
        assert got == expected, [e.type for e in shuffled]


def test_late_retrying_never_overwrites_completed() -> None:
    s = fold(JobState(), [ev("started", 1), ev("completed", 1, result={"artifacts": []})])
    d = decide(s, ev("retrying", 1, error={"code": "timeout", "message": "late"}))
    assert d.changes == {} or set(d.changes) == {"started_at"}
    assert d.why == "run already terminal"


def test_started_of_next_attempt_supersedes_retrying_but_not_vice_versa() -> None:
    retrying = ev("retrying", 1, at=3, error={"code": "timeout", "message": "slow"})
    started2 = ev("started", 2, at=4)
    a = fold(JobState(), [ev("started", 1), retrying, started2])
    b = fold(JobState(), [ev("started", 1), started2, retrying])
    assert a == b
    assert (a.status, a.attempt, a.error_code) == ("started", 2, None)


def test_progress_only_rises_within_an_attempt_and_ignores_terminal_jobs() -> None:
    s = fold(JobState(), [ev("started", 1), ev("progress", 1, seq=2, fraction=0.7, stage="b")])
    d = decide(s, ev("progress", 1, seq=1, fraction=0.2, stage="a"))
    assert "progress" not in d.changes
    done = fold(s, [ev("failed", 1, error={"code": "bad_input", "message": "no frames"})])
    assert decide(done, ev("progress", 1, seq=3, fraction=0.9)).changes == {}
    assert (done.status, done.error_code, done.progress) == ("failed", "bad_input", 0.7)


def test_events_of_an_older_run_change_nothing() -> None:
    s = JobState(status="queued", run=2)
    for e in (
        ev("started", 1),
        ev("failed", 3, error={"code": "x", "message": "y"}),
        ev("dead_lettered", 3, reason="attempts_exhausted", attempts=3, last_error="y"),
    ):
        d = decide(s, e)
        assert d.changes == {} and d.dead_letter is None and d.why == "older run"


def test_dead_lettered_sets_flag_and_yields_row_once_per_run() -> None:
    s = fold(
        JobState(),
        [
            ev("started", 3),
            ev("failed", 3, error={"code": "attempts_exhausted", "message": "boom"}),
        ],
    )
    d = decide(
        s, ev("dead_lettered", 3, reason="attempts_exhausted", attempts=3, last_error="boom")
    )
    assert d.changes == {"dead_lettered": True}
    assert d.dead_letter == {
        "run": 1,
        "reason": "attempts_exhausted",
        "attempts": 3,
        "last_error": "boom",
    }
    assert s.status == "failed"


def test_first_terminal_event_of_a_run_wins() -> None:
    a = fold(JobState(), [ev("cancelled", 1, at=2), ev("completed", 1, at=3, result={})])
    b = fold(JobState(), [ev("completed", 1, at=3, result={}), ev("cancelled", 1, at=2)])
    assert a.status == "cancelled" and b.status == "completed"


def test_new_run_supersedes_terminal_state_of_the_previous_run() -> None:
    s = fold(
        JobState(),
        [
            ev("failed", 2, error={"code": "e", "message": "m"}),
            ev("dead_lettered", 2, reason="r", attempts=2, last_error="m"),
        ],
    )
    s = fold(s, [ev("started", 1, run=2, at=10)])
    assert (s.status, s.run, s.attempt, s.error_code, s.dead_lettered) == (
        "started",
        2,
        1,
        None,
        False,
    )
    assert s.started_at == T0 + timedelta(seconds=10)


def test_order_key_ranks() -> None:
    keys = [
        order_key(*k)
        for k in [
            ("queued", 1, 0),
            ("started", 1, 1),
            ("retrying", 1, 1),
            ("started", 1, 2),
            ("completed", 1, 2),
            ("queued", 2, 0),
        ]
    ]
    assert keys == sorted(keys)
    for a, b in itertools.pairwise(keys):
        assert a < b
