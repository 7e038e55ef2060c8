"""Job ids typed on the command line: a whole UUID, or a unique prefix of one.

``arforge jobs`` and ``arforge dlq list`` show 8-character id prefixes at a narrow
terminal (as git shows short hashes), so every command that takes a job id also takes a
prefix of at least :data:`MIN_PREFIX` hex digits. A whole UUID is used as given; a prefix
is looked up among the newest :data:`SCAN_LIMIT` items of a paged list (``GET /v1/jobs``
or ``GET /v1/dead-letters``). Hyphens are ignored when comparing, any case is accepted.
Text that is neither (e.g. ``nope``) is passed on unchanged, so the API answers it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

MIN_PREFIX = 4
SCAN_LIMIT = 2000
PAGE = 200
SHOWN = 5

_HEX_REF = re.compile(r"[0-9a-f][0-9a-f-]*")

# One page of a list: called with (cursor, limit), returns {"items": [...], "next_cursor"}.
Pages = Callable[[str | None, int], dict[str, Any]]


def is_whole_id(ref: str) -> bool:
    """Whether ``ref`` is a complete UUID (any form :class:`uuid.UUID` reads)."""
    try:
        uuid.UUID(ref)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def prefix_of(ref: str) -> str | None:
    """The hex digits of ``ref`` (lower case, no hyphens) when it is an id prefix to look
    up; ``None`` when ``ref`` is a whole UUID or not made of hex digits and hyphens (such a
    ref goes to the API as given). ``ValueError`` with a sentence for an empty ref or a hex
    prefix shorter than :data:`MIN_PREFIX` digits."""
    text = ref.strip().lower()
    if not text:
        raise ValueError("the job id is empty")
    if is_whole_id(text) or not _HEX_REF.fullmatch(text):
        return None
    digits = text.replace("-", "")
    if len(digits) < MIN_PREFIX:
        raise ValueError(
            f"job id prefix {ref.strip()!r} is too short; give at least {MIN_PREFIX} "
            "characters of the id (or the whole id)"
        )
    return digits


def resolve(
    ref: str,
    pages: Pages,
    *,
    field: str = "id",
    what: str = "job",
    limit: int | None = None,
) -> str:
    """The whole id that ``ref`` names.

    A whole UUID or non-hex text comes back unchanged (stripped). A prefix is matched
    against the ``field`` of the items of ``pages`` (newest first; at most ``limit`` items,
    default :data:`SCAN_LIMIT`, in pages of up to :data:`PAGE`); ``what`` names the items
    in messages ("job", "dead letter"). Raises ``ValueError`` for a too-short prefix or one
    that matches several ids (the sentence lists up to :data:`SHOWN` of them), and
    ``LookupError`` (one sentence naming the prefix, and how many items were searched when
    ``limit`` was reached) when none matches. Uniqueness is judged among the searched items
    only.
    """
    digits = prefix_of(ref)
    if digits is None:
        return ref.strip()
    limit = SCAN_LIMIT if limit is None else limit
    shown = ref.strip()
    found: list[str] = []
    seen = 0
    cursor: str | None = None
    capped = False
    while True:
        if seen >= limit:
            capped = True
            break
        page = pages(cursor, min(PAGE, limit - seen))
        items = page.get("items") or []
        for item in items:
            full = str(item.get(field) or "")
            if full.lower().replace("-", "").startswith(digits) and full not in found:
                found.append(full)
        seen += len(items)
        cursor = page.get("next_cursor")
        if not cursor or not items:
            break
    if len(found) == 1:
        return found[0]
    if found:
        listed = ", ".join(found[:SHOWN])
        more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
        raise ValueError(
            f"id prefix {shown!r} matches {len(found)} {what}s: {listed}{more}; "
            "give more characters"
        )
    within = (
        f" among your newest {seen} {what}s (the search goes no further; give the whole id)"
        if capped
        else ""
    )
    raise LookupError(f"no {what} matches the id prefix {shown!r}{within}")
