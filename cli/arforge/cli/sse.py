"""A Server-Sent Events parser (the WHATWG HTML "event stream" format).

Fields per event: ``id:``, ``event:``, ``data:`` (several lines joined with ``\\n``),
``retry:``; a blank line dispatches; lines starting with ``:`` are comments (keep-alives).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event; ``event`` defaults to ``"message"``."""

    data: str
    event: str = "message"
    id: str | None = None


def parse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Yield events from decoded lines (without line terminators)."""
    data: list[str] = []
    event = ""
    last_id: str | None = None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line == "":
            if data:
                yield SseEvent(data="\n".join(data), event=event or "message", id=last_id)
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
    if data:
        yield SseEvent(data="\n".join(data), event=event or "message", id=last_id)
