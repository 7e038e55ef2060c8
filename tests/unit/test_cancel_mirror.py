"""The worker's mirror of the cancel bucket: puts, deletes, start-up load, expiry."""

from __future__ import annotations

from arforge.shared.runtime.cancels import CancelMirror


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_put_requests_and_delete_or_purge_forgets() -> None:
    m = CancelMirror(ttl_s=100, clock=Clock())
    assert m.update("a", b"1", None) is True
    assert m.update("b", b"1", None) is True
    assert m.requested("a") and m.requested("b") and not m.requested("c")
    assert m.update("a", b"", "DEL") is False
    assert m.update("b", b"", "PURGE") is False
    assert not m.requested("a") and not m.requested("b")
    assert len(m) == 0


def test_a_value_other_than_1_is_not_a_request() -> None:
    m = CancelMirror(ttl_s=100, clock=Clock())
    m.update("a", b"1", None)
    assert m.update("a", b"0", None) is False
    assert not m.requested("a")


def test_loaded_keys_count_and_expire_with_the_bucket_ttl() -> None:
    clock = Clock()
    m = CancelMirror(ttl_s=100, clock=clock)
    m.load(["x", "y"])
    clock.t += 50
    m.update("z", b"1", None)
    assert m.requested("x") and m.requested("z")
    clock.t += 60  # x, y are 110 s old, z 60 s
    assert not m.requested("x") and not m.requested("y") and m.requested("z")


def test_expired_entries_are_pruned_as_updates_arrive() -> None:
    clock = Clock()
    m = CancelMirror(ttl_s=240, clock=clock)
    for i in range(1000):
        m.update(f"job-{i}", b"1", None)
    clock.t += 241
    m.update("fresh", b"1", None)
    assert len(m) == 1 and m.requested("fresh")
