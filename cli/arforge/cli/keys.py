"""``arforge keys list``: API keys as a table or JSON (never the keys themselves)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from .jobs import _fmt_time, _print_table, table_width
from .tables import fit_table


def keys_table(keys: Sequence[Any], console: Console, as_json: bool, wide: bool = False) -> None:
    """Print API keys (``arforge.api.auth.KeyInfo``) as a table, or as JSON."""

    def iso(t: Any) -> str | None:
        return t.isoformat() if t is not None else None

    if as_json:
        out = [
            {
                "id": k.id,
                "tenant": k.tenant,
                "prefix": k.prefix,
                "created_at": iso(k.created_at),
                "last_used_at": iso(k.last_used_at),
                "revoked_at": iso(k.revoked_at),
            }
            for k in keys
        ]
        console.print_json(json.dumps(out))
        return
    if not keys:
        console.print("no API keys")
        return
    rows = [
        [
            k.id,
            k.tenant,
            k.prefix,
            _fmt_time(iso(k.created_at)),
            _fmt_time(iso(k.last_used_at)) or "never",
            _fmt_time(iso(k.revoked_at)) or "-",
        ]
        for k in keys
    ]
    headers = ["id", "tenant", "prefix", "created", "last used", "revoked"]
    _print_table(console, fit_table(headers, rows, table_width(console, wide), keep={2, 5}))
