"""The worker's mirror of the cancel bucket: runs, deletes, start-up load, expiry."""

from __future__ import annotations

from arforge.shared.runtime.cancels import CancelMirror


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_value_is_the_highest_cancelled_run() -> None:
    m = CancelMirror(ttl_s=100, clock=Clock())
    assert m.update("a", b"1", None) == 1
    assert m.requested("a", 1) and not m.requested("a", 2)
    assert m.update("a", b"2", None) == 2  # run 2 cancelled too (after a retry)
    assert m.requested("a", 1) and m.requested("a", 2) and not m.requested("a", 3)
    assert not m.requested("b", 1)


def test_delete_purge_and_garbage_forget() -> None:
    m = CancelMirror(ttl_s=100, clock=Clock())
    m.update("a", b"1", None)
    m.update("b", b"3", None)
    m.update("c", b"2", None)
    assert m.update("a", b"", "DEL") == 0
    assert m.update("b", b"", "PURGE") == 0
    assert m.update("c", b"not a number", None) == 0
    assert not m.requested("a", 1) and not m.requested("b", 1) and not m.requested("c", 1)
    assert len(m) == 0


def test_loaded_values_count_and_live_updates_are_not_undone() -> None:
    m = CancelMirror(ttl_s=100, clock=Clock())
    m.update("a", b"3", None)  # seen live while the start-up load was in flight
    m.load({"a": 2, "b": 1})
    assert m.through("a") == 3 and m.through("b") == 1


def test_entries_expire_with_the_bucket_ttl() -> None:
    clock = Clock()
    m = CancelMirror(ttl_s=100, clock=clock)
    m.load({"x": 1, "y": 1})
    clock.t += 50
    m.update("z", b"1", None)
    assert m.requested("x", 1) and m.requested("z", 1)
    clock.t += 60  # x, y are 110 s old, z 60 s
    assert not m.requested("x", 1) and not m.requested("y", 1) and m.requested("z", 1)


def test_expired_entries_are_pruned_as_updates_arrive() -> None:
    clock = Clock()
    m = CancelMirror(ttl_s=240, clock=clock)
    for i in range(1000):
        m.update(f"job-{i}", b"1", None)
    clock.t += 241
    m.update("fresh", b"1", None)
    assert len(m) == 1 and m.requested("fresh", 1)
