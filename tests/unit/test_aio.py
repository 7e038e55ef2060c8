"""Service entry points run on uvloop when installed; ARFORGE_EVENT_LOOP=asyncio opts out."""

from __future__ import annotations

import asyncio

import pytest

from arforge.shared import aio


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARFORGE_EVENT_LOOP", raising=False)
    assert aio.event_loop_name() == "uvloop"
    assert aio.run(_loop_module()) == "uvloop"


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARFORGE_EVENT_LOOP", "asyncio")
    assert aio.event_loop_name() == "asyncio"
    assert aio.run(_loop_module()) == "asyncio"
