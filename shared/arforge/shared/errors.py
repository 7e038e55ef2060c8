"""Exceptions a handler raises to steer the job runtime (handlers never touch NATS)."""

from __future__ import annotations


class JobFailed(Exception):
    """End the job now, without retry, with a machine-readable ``code``.

    ``message`` is a sentence a person understands; ``details`` is JSON-serialisable.
    """

    def __init__(self, code: str, message: str, details: dict | None = None) -> None:  # type: ignore[type-arg]
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class Retry(Exception):
    """Fail this attempt and retry per the job type's policy (or after ``delay_s``)."""

    def __init__(self, message: str, *, code: str = "retry", delay_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.delay_s = delay_s


class ChildCrashed(Retry):
    """A child process died by a signal (SIGABRT from native code, SIGSEGV, OOM kill)."""

    def __init__(self, signal_name: str, stderr_tail: str = "") -> None:
        super().__init__(
            f"compute process died with {signal_name}"
            + (f": {stderr_tail}" if stderr_tail else ""),
            code="native_crash",
        )
        self.signal_name = signal_name
        self.stderr_tail = stderr_tail


class JobCancelled(Exception):
    """Raised inside a handler's awaits when the job was cancelled."""


class JobTimedOut(Retry):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"attempt exceeded its {timeout_s:g} s timeout", code="timeout")
