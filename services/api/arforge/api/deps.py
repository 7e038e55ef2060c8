"""FastAPI dependencies shared by every route module.

``app.state`` carries the process-wide objects that :func:`arforge.api.app.create_app`'s
lifespan creates: ``pool`` (asyncpg), ``store`` (ObjectStore), ``bus`` (Bus),
``registry`` (contract Registry), ``marks`` (outbox stamps) and ``settings``.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from arforge.shared.contracts import Registry
from arforge.shared.settings import Settings
from arforge.shared.storage.base import ObjectStore

from .auth import Tenant, tenant_for_key
from .errors import ApiError

__all__ = [
    "Tenant",
    "get_bus",
    "get_marks",
    "get_pool",
    "get_registry",
    "get_settings",
    "get_store",
    "require_tenant",
]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer afk_...`; create one with "
    "`arforge keys create --tenant NAME`",
)


def _state(request: Request, name: str) -> Any:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise ApiError(503, "not_ready", f"the API is not ready ({name} unavailable)")
    return value


def get_pool(request: Request) -> asyncpg.Pool:
    """The asyncpg pool."""
    return _state(request, "pool")  # type: ignore[no-any-return]


def get_store(request: Request) -> ObjectStore:
    """The object store (local or S3), made by ``arforge.shared.storage.factory.make_store``."""
    return _state(request, "store")  # type: ignore[no-any-return]


def get_marks(request: Request) -> Any:
    """The :class:`arforge.api.outbox.PublishedMarks` batcher, or ``None`` (stamp at once)."""
    return getattr(request.app.state, "marks", None)


def get_bus(request: Request) -> Any:
    """The connected :class:`arforge.shared.bus.Bus`."""
    return _state(request, "bus")


def get_registry(request: Request) -> Registry:
    """The contract registry (job types, params/result models, input rules)."""
    return _state(request, "registry")  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return _state(request, "settings")  # type: ignore[no-any-return]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def require_tenant(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Tenant:
    """The caller's tenant from ``Authorization: Bearer <key>``; 401 ``unauthorized`` if the
    header is missing, not a Bearer token, or the key is unknown or revoked."""
    if creds is None or not creds.credentials:
        scheme = (request.headers.get("Authorization") or "").strip().split(" ", 1)[0]
        if scheme and scheme.lower() != "bearer":
            raise _unauthorized(
                f"unsupported authorization scheme {scheme[:20]!r}: use Authorization: Bearer <key>"
            )
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    tenant = await tenant_for_key(pool, creds.credentials.strip())
    if tenant is None:
        raise _unauthorized("invalid or revoked API key")
    return tenant
