"""Event ids: the UUIDv5 of the joined parts, the same for the same transition."""

from __future__ import annotations

import random
import uuid

from arforge.shared.contracts import JobStatus, event_id, job_event
from arforge.shared.contracts.events import _NAMESPACE


def test_event_id_is_the_uuid5_of_the_joined_parts() -> None:
    rng = random.Random(7)
    for _ in range(500):
        parts = [
            str(uuid.UUID(int=rng.getrandbits(128))),
            rng.randint(1, 9),
            rng.choice(list(JobStatus)).value,
            rng.randint(0, 5),
            "ünïcode" * rng.randint(0, 2),
        ][: rng.randint(1, 5)]
        got = event_id(*parts)
        assert got == str(uuid.uuid5(_NAMESPACE, ":".join(str(p) for p in parts)))
        assert uuid.UUID(got).version == 5


def test_the_same_transition_gets_the_same_id_and_another_attempt_another() -> None:
    job = {"job_id": str(uuid.uuid4()), "type": "mesh", "tenant_id": "t", "run": 1}
    a = job_event(JobStatus.started, job, source="w", attempt=1)
    b = job_event(JobStatus.started, job, source="other", attempt=1)
    c = job_event(JobStatus.started, job, source="w", attempt=2)
    assert a.id == b.id != c.id
    # terminal events carry no attempt: a completion re-emitted by a redelivery dedups
    done1 = job_event(JobStatus.completed, job, source="w", attempt=1)
    done2 = job_event(JobStatus.completed, job, source="w", attempt=2)
    assert done1.id == done2.id
