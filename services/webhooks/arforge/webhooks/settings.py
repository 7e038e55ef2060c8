"""Dispatcher settings, from ``ARFORGE_WEBHOOKS__*`` environment variables.

e.g. ``ARFORGE_WEBHOOKS__ALLOW_PRIVATE_TARGETS=true`` (development only: lets deliveries
reach loopback and private addresses), ``ARFORGE_WEBHOOKS__MAX_ATTEMPTS=5``,
``ARFORGE_WEBHOOKS__BACKOFF_INITIAL_S=10``. NATS and PostgreSQL URLs come from the shared
settings (``ARFORGE_NATS_URL``, ``ARFORGE_DATABASE_URL``).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .policy import RetrySchedule


class WebhookSettings(BaseSettings):
    """Every knob of delivery; defaults suit production."""

    model_config = SettingsConfigDict(env_prefix="ARFORGE_WEBHOOKS__", extra="ignore")

    allow_private_targets: bool = False
    attempt_timeout_s: float = Field(15.0, gt=0, le=300)
    response_excerpt_bytes: int = Field(1024, ge=0, le=65536)
    max_attempts: int = Field(3, ge=1, le=50)
    backoff_initial_s: float = Field(30.0, ge=0)
    backoff_multiplier: float = Field(4.0, ge=1)
    backoff_max_s: float = Field(6 * 3600.0, ge=0)
    jitter: float = Field(0.2, ge=0, le=1)
    retry_after_cap_s: float = Field(3600.0, ge=0)
    concurrency: int = Field(50, ge=1, le=1000)
    per_endpoint_concurrency: int = Field(8, ge=1, le=1000)
    # Auto-disable: a run of at least this many consecutive failed attempts that has
    # lasted at least this long disables the subscription.
    disable_after_failures: int = Field(15, ge=1)
    disable_after_s: float = Field(24 * 3600.0, ge=0)
    poll_interval_s: float = Field(0.25, gt=0)
    consumer_batch: int = Field(64, ge=1, le=1000)
    db_pool_size: int = Field(8, ge=2, le=100)
    user_agent: str = "ARForge-Webhooks/0.1"

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery stays invisible to other dispatchers: a claimed
        message may wait in the ready queue for a slot (at most two attempt timeouts, see
        ``dispatcher.READY_FACTOR``), then runs its own attempt, plus time to record it."""
        return 3 * self.attempt_timeout_s + 30.0

    def schedule(self) -> RetrySchedule:
        return RetrySchedule(
            max_attempts=self.max_attempts,
            initial_s=self.backoff_initial_s,
            multiplier=self.backoff_multiplier,
            max_s=self.backoff_max_s,
            jitter=self.jitter,
            retry_after_cap_s=self.retry_after_cap_s,
        )
