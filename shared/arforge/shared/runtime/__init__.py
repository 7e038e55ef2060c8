"""The job runtime: :class:`Worker`, :class:`JobContext`, :func:`run_worker`."""

from .context import JobContext
from .lanes import LaneScheduler
from .worker import Handler, Worker, run_worker

__all__ = ["Handler", "JobContext", "LaneScheduler", "Worker", "run_worker"]
