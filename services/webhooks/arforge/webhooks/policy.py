"""Retry schedule for webhook deliveries: exponential backoff with jitter, Retry-After.

Attempt ``n`` (1-based) failing schedules attempt ``n + 1`` after
``min(initial * multiplier ** (n - 1), max)`` seconds, scaled by a uniform factor in
``[1 - jitter, 1 + jitter]`` (AWS Architecture Blog, "Exponential Backoff And Jitter",
2015; here a bounded multiplicative jitter keeps the order of attempts). A
``Retry-After`` from the receiver raises the delay to what it asked for, capped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetrySchedule:
    """``max_attempts`` in total (default 3: the first try plus two retries)."""

    max_attempts: int = 3
    initial_s: float = 30.0
    multiplier: float = 4.0
    max_s: float = 3600.0
    jitter: float = 0.2
    retry_after_cap_s: float = 3600.0

    def delay_after(
        self, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        base = min(self.initial_s * self.multiplier ** max(0, attempt - 1), self.max_s)
        j = max(0.0, min(self.jitter, 1.0))
        delay = base * (rng or random).uniform(1.0 - j, 1.0 + j)
        if retry_after_s is not None and retry_after_s > 0:
            delay = max(delay, min(retry_after_s, self.retry_after_cap_s))
        return delay

    def has_next(self, attempt: int, max_attempts: int | None = None) -> bool:
        """Whether another attempt follows failed attempt ``attempt``."""
        return attempt < (self.max_attempts if max_attempts is None else max_attempts)
