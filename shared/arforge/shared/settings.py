"""Configuration for every ARForge process, read from the environment.

Every variable starts with ``ARFORGE_``; groups nest with a double underscore, e.g.
``ARFORGE_STORAGE__BACKEND=s3`` or ``ARFORGE_WORKER__CONCURRENCY=4``. The most used
values are flat: ``ARFORGE_NATS_URL``, ``ARFORGE_DATABASE_URL``.
Per-type retry policies can be overridden as JSON, e.g.
``ARFORGE_POLICIES='{"photogrammetry": {"delays_s": [5, 10], "timeout_s": 600}}'``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseModel):
    """Where artifacts and uploads live."""

    backend: Literal["local", "s3"] = "local"
    root: Path = Path(".arforge/storage")  # local backend
    bucket: str = "arforge"
    endpoint_url: str | None = None  # MinIO / R2 / moto; None = AWS
    region: str = "auto"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    presign_expiry_s: int = 3600


class WorkerSettings(BaseModel):
    """Job runtime knobs shared by all workers."""

    concurrency: int = Field(1, ge=1, le=256)
    ack_wait_s: float = Field(60.0, gt=0)
    drain_grace_s: float = Field(30.0, ge=0)
    # A lower lane is served first once it has been passed over this many times while it
    # had work waiting (anti-starvation). With 10, a low job waits at most ~10 job slots.
    starvation_limit: int = Field(10, ge=1)
    idle_poll_s: float = Field(1.0, gt=0)
    progress_interval_s: float = Field(1.0, ge=0)
    workdir: Path = Path(".arforge/work")


class PolicyOverride(BaseModel):
    delays_s: list[float] | None = None
    timeout_s: float | None = None
    jitter: float | None = None


class Settings(BaseSettings):
    """Root settings object; see module docstring for the environment mapping."""

    model_config = SettingsConfigDict(
        env_prefix="ARFORGE_", env_nested_delimiter="__", extra="ignore"
    )

    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/arforge"
    api_url: str = "http://127.0.0.1:8000"
    api_host: str = "127.0.0.1"  # where `python -m arforge.api` listens
    api_port: int = Field(8000, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON unless stderr is a TTY
    storage: StorageSettings = StorageSettings()
    worker: WorkerSettings = WorkerSettings()
    policies: dict[str, PolicyOverride] = {}
    max_upload_bytes: int = 2 * 1024**3
    # When set, GET /metrics needs `Authorization: Bearer <token>` (Prometheus:
    # `authorization: {credentials: <token>}`); unset, it is open like /healthz.
    metrics_token: SecretStr | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
