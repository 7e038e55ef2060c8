"""``Bus.submit`` with events: one round trip, both stored, nothing leaked on timeout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from arforge.shared.bus import EVENTS, JOBS, connect
from arforge.shared.contracts import Event, JobMessage, JobStatus, Priority, Registry, job_event


def a_job() -> JobMessage:
    return JobMessage(
        job_id=str(uuid.uuid4()),
        type="photogrammetry",
        priority=Priority.high,
        tenant_id="t1",
        run=1,
        params={},
        submitted_at=datetime.now(UTC),
    )


def queued(job: JobMessage) -> Event:
    ref = {**job.model_dump(mode="json"), "priority": job.priority.value}
    return job_event(JobStatus.queued, ref, source="test", attempt=0)


async def test_job_and_its_queued_event_are_both_stored_and_deduplicated(nats_server) -> None:  # type: ignore[no-untyped-def]
    bus = await connect(nats_server.url, name="test")
    try:
        await bus.ensure_topology([Registry()["photogrammetry"]])
        job = a_job()
        seq = await bus.submit(job, events=[queued(job)])
        again = await bus.submit(job, events=[queued(job)])  # same ids: dropped by the server
        assert seq == again == 1
        raw = await bus.js.get_msg(JOBS, seq)
        assert raw.subject == "jobs.photogrammetry.high"
        assert JobMessage.model_validate_json(raw.data or b"").job_id == job.job_id
        info = await bus.js.stream_info(EVENTS)
        assert info.state.messages == 1
        ev = Event.model_validate_json((await bus.js.get_msg(EVENTS, 1)).data or b"")
        assert (ev.type, ev.subject) == ("job.queued", job.job_id)
        assert bus.publisher.pending == 0
    finally:
        await bus.close()


async def test_unanswered_publishes_time_out_and_free_their_slots(nats_server) -> None:  # type: ignore[no-untyped-def]
    bus = await connect(nats_server.url, name="test")
    try:
        await bus.ensure_topology([Registry()["photogrammetry"]])
        bus.timeout_s = 0.5
        nats_server.stop()  # the client buffers while it reconnects: no answer comes
        job = a_job()
        with pytest.raises(TimeoutError):
            await bus.submit(job, events=[queued(job)])
        assert bus.publisher.pending == 0
    finally:
        nats_server.start()
        await bus.close()


async def test_publisher_reports_refusals_and_missing_streams_as_errors(nats_server) -> None:  # type: ignore[no-untyped-def]
    from nats.js.errors import APIError, NoStreamResponseError

    bus = await connect(nats_server.url, name="test")
    try:
        await bus.ensure_topology([Registry()["photogrammetry"]])
        pub = bus.publisher
        first = await (await pub.publish("jobs.photogrammetry.low", b"{}", {"Nats-Msg-Id": "a"}))
        second = await (await pub.publish("jobs.photogrammetry.low", b"{}", {}))
        assert second.seq == first.seq + 1 and not first.duplicate and not second.duplicate
        again = await (await pub.publish("jobs.photogrammetry.low", b"[]", {"Nats-Msg-Id": "a"}))
        assert again == (first.seq, True)  # dropped by the server: the original's sequence
        # the stream refuses a publish whose expected last sequence is wrong
        stale = {"Nats-Expected-Last-Sequence": str(first.seq)}
        with pytest.raises(APIError) as refused:
            await (await pub.publish("jobs.photogrammetry.low", b"{}", stale))
        assert refused.value.err_code == 10071  # wrong last sequence
        with pytest.raises(NoStreamResponseError):
            await (await pub.publish("no.stream.here", b"{}", {}))
        assert pub.pending == 0
        assert (await bus.js.stream_info(JOBS)).state.messages == 2
    finally:
        await bus.close()
