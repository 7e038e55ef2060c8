"""Contracts: job specs, messages, results and events shared by all services."""

from .base import (
    PRIORITIES,
    Artifact,
    InputRef,
    JobMessage,
    JobResult,
    JobSpec,
    Priority,
    RetryPolicy,
)
from .events import PUBLIC_EVENT_NAMES, TERMINAL, Event, JobStatus, event_id, job_event
from .registry import Registry, default_registry

__all__ = [
    "PRIORITIES",
    "PUBLIC_EVENT_NAMES",
    "TERMINAL",
    "Artifact",
    "Event",
    "InputRef",
    "JobMessage",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "Priority",
    "Registry",
    "RetryPolicy",
    "default_registry",
    "event_id",
    "job_event",
]
