"""NATS JetStream bus: topology, job submission, events, cancellation, dead letters."""

from .client import MIN_SERVER_VERSION, Bus, ServerTooOld, check_server_version, connect
from .topology import (
    ADVISORIES,
    CANCEL_BUCKET,
    DLQ,
    EVENTS,
    JOBS,
    consumer_name,
    dlq_subject,
    job_subject,
)

__all__ = [
    "ADVISORIES",
    "CANCEL_BUCKET",
    "DLQ",
    "EVENTS",
    "JOBS",
    "MIN_SERVER_VERSION",
    "Bus",
    "ServerTooOld",
    "check_server_version",
    "connect",
    "consumer_name",
    "dlq_subject",
    "job_subject",
]
