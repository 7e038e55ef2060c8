"""Build the configured :class:`~arforge.shared.storage.base.ObjectStore`."""

from __future__ import annotations

from arforge.shared.settings import Settings

from .base import ObjectStore
from .local import LocalStore
from .s3 import S3Store


def make_store(settings: Settings) -> ObjectStore:
    """``LocalStore(settings.storage.root)`` or ``S3Store`` per ``settings.storage.backend``.

    S3 options: ``bucket``, ``endpoint_url``, ``region``, ``access_key_id``,
    ``secret_access_key`` and (optional, default true) ``create_bucket``.
    """
    s = settings.storage
    if s.backend == "local":
        return LocalStore(s.root)
    if s.backend == "s3":
        return S3Store(
            s.bucket,
            endpoint_url=s.endpoint_url,
            region=s.region,
            access_key_id=s.access_key_id,
            secret_access_key=s.secret_access_key,
            create_bucket=bool(getattr(s, "create_bucket", True)),
        )
    raise ValueError(f"unknown storage backend {s.backend!r}")
