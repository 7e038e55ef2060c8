"""Opaque keyset cursors over ``(created_at, id)``, newest first.

A cursor is url-safe base64 of ``{"t": <created_at ISO 8601>, "i": <id>}`` (no padding);
clients must treat it as opaque. A malformed cursor is a 422 ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from .errors import ApiError


def encode_cursor(created_at: datetime, id_: Any, extra: dict[str, Any] | None = None) -> str:
    """The cursor pointing just after the row ``(created_at, id_)``."""
    payload = {"t": created_at.isoformat(), "i": str(id_), **(extra or {})}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, dict[str, Any]]:
    """``(created_at, id, extra)`` from a cursor; :class:`ApiError` 422 if malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        created = datetime.fromisoformat(payload.pop("t"))
        id_ = str(payload.pop("i"))
        if created.tzinfo is None:
            raise ValueError("naive time")
    except Exception as exc:
        raise ApiError(422, "invalid_cursor", "the cursor is malformed; use next_cursor") from exc
    return created, id_, payload
