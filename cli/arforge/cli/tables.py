"""Plain-text tables that fit a terminal width without cutting the columns that matter.

Used by ``arforge jobs`` and ``arforge dlq list``. Columns are separated by two spaces;
when a table is too wide, the id column is shortened to a prefix first (as git shows
short hashes), then the widest of the columns that may be cut loses one character at a
time (ending in "…"). Columns listed in ``keep`` are never cut.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

SHORT_ID = 8
MIN_CUT_WIDTH = 3


@dataclass(frozen=True)
class Fitted:
    """A rendered table: ``lines`` (header, rule, one per row; no trailing blanks) and
    whether the id column was shortened to a prefix (``ids_shortened``)."""

    lines: list[str]
    ids_shortened: bool


def fit_table(
    headers: list[str],
    rows: list[list[str]],
    width: int | None,
    *,
    keep: Collection[int] = (),
    id_col: int | None = 0,
    short_id: int = SHORT_ID,
) -> Fitted:
    """Lay out ``rows`` under ``headers`` within ``width`` characters (``None``: no limit).

    Runs of whitespace inside a cell become one space. Order of shrinking when too wide:
    the ``id_col`` column to its first ``short_id`` characters (no ellipsis, so the prefix
    can be searched for), then the other columns not in ``keep``, widest first, down to
    3 characters each. ``keep`` columns and the id prefix are never cut, so a line can
    still exceed a very small ``width``.
    """
    n = len(headers)
    cells = [[" ".join(str(c).split()) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [headers, *cells]) for i in range(n)]

    def total() -> int:
        return sum(widths) + 2 * (n - 1)

    shortened = False
    if width is not None and total() > width and id_col is not None:
        short = max(short_id, len(headers[id_col]))
        if widths[id_col] > short:
            widths[id_col] = short
            shortened = True
    cuttable = [i for i in range(n) if i != id_col and i not in keep]
    while width is not None and cuttable and total() > width:
        i = max(cuttable, key=lambda k: widths[k])
        if widths[i] <= MIN_CUT_WIDTH:
            break
        widths[i] -= 1

    def line(row: list[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(row, widths, strict=True)):
            if len(c) > w:
                c = c[:w] if i == id_col else c[: w - 1] + "…"
            out.append(c.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in cells)]
    return Fitted(lines, shortened)
