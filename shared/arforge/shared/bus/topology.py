"""JetStream names and the idempotent topology set-up.

| thing        | name                                   | notes                                   |
|--------------|----------------------------------------|-----------------------------------------|
| job stream   | ``JOBS``, ``jobs.<type>.<priority>``   | WorkQueue, 2 min duplicate window        |
| job consumer | durable pull ``<type>-<priority>``     | fixed ack_wait, no backoff list          |
| events       | ``EVENTS``, ``events.>``               | limits retention, 7 days                 |
| dead letters | ``DLQ``, ``dlq.jobs.<type>.<priority>``| limits retention, 30 days                |
| advisories   | ``ADVISORIES``                         | captures MAX_DELIVERIES for JOBS         |
| cancellation | KV bucket ``job_cancel``               | key = job id, 1 day TTL                  |

Why no ``backoff`` list on the consumer: with nats-server 2.10-2.15 a backoff list silently
replaces ``ack_wait`` with its first step, so a long job is redelivered while it still runs.
Retry delays are computed by the worker and applied with ``nak(delay=...)`` instead.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from ..contracts import PRIORITIES, JobSpec

JOBS = "JOBS"
EVENTS = "EVENTS"
DLQ = "DLQ"
ADVISORIES = "ADVISORIES"
CANCEL_BUCKET = "job_cancel"
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.JOBS.>"
DAY_S = 86_400
CANCEL_TTL_S = float(DAY_S)  # a cancel request outlives any job it could still stop
# Deliveries allowed beyond the policy's attempts, for redeliveries that are not failed
# attempts (a worker killed mid-job, a graceful shutdown handing a job back).
CRASH_ALLOWANCE = 2


def job_subject(job_type: str, priority: str) -> str:
    return f"jobs.{job_type}.{priority}"


def dlq_subject(job_type: str, priority: str) -> str:
    return f"dlq.jobs.{job_type}.{priority}"


def consumer_name(job_type: str, priority: str) -> str:
    return f"{job_type}-{priority}"


def stream_configs() -> list[StreamConfig]:
    """The four streams, as JetStream stream configs."""
    return [
        StreamConfig(
            name=JOBS,
            subjects=["jobs.*.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120.0,
            discard=DiscardPolicy.OLD,
        ),
        StreamConfig(
            name=EVENTS,
            subjects=["events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7.0 * DAY_S,
            duplicate_window=120.0,
        ),
        StreamConfig(
            name=DLQ,
            subjects=["dlq.jobs.*.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30.0 * DAY_S,
            duplicate_window=120.0,
        ),
        StreamConfig(
            name=ADVISORIES,
            subjects=[MAX_DELIVERIES_ADVISORY],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7.0 * DAY_S,
        ),
    ]


def job_consumer_config(spec: JobSpec, priority: str, ack_wait_s: float) -> ConsumerConfig:
    """Durable pull consumer for one lane. ``max_deliver`` = attempts + crash allowance."""
    return ConsumerConfig(
        durable_name=consumer_name(spec.type, priority),
        filter_subject=job_subject(spec.type, priority),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=spec.policy.max_attempts + CRASH_ALLOWANCE,
        max_ack_pending=10_000,
        max_waiting=512,
    )


async def ensure_streams(js: JetStreamContext) -> None:
    """Create or update the streams; safe to call from every process at start-up."""
    for cfg in stream_configs():
        assert cfg.name is not None
        try:
            await js.stream_info(cfg.name)
        except NotFoundError:
            await js.add_stream(cfg)
        else:
            await js.update_stream(cfg)


async def ensure_job_consumers(
    js: JetStreamContext, specs: list[JobSpec], ack_wait_s: float
) -> None:
    """Create or update the ``<type>-<priority>`` consumers for ``specs``."""
    for spec in specs:
        for prio in PRIORITIES:
            await js.add_consumer(JOBS, job_consumer_config(spec, prio.value, ack_wait_s))


async def ensure_cancel_bucket(js: JetStreamContext):  # type: ignore[no-untyped-def]
    try:
        return await js.key_value(CANCEL_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(bucket=CANCEL_BUCKET, ttl=CANCEL_TTL_S, history=1)
