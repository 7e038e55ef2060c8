"""Priority lanes and the anti-starvation rule (pure scheduler logic)."""

from arforge.shared.runtime.lanes import LaneScheduler


def keys(s: LaneScheduler) -> list[tuple[str, str]]:
    return [ln.key for ln in s.order()]


def test_priority_order_high_default_low() -> None:
    s = LaneScheduler(["a"], starvation_limit=3)
    assert keys(s) == [("a", "high"), ("a", "default"), ("a", "low")]


def test_empty_lanes_are_skipped_until_notified() -> None:
    s = LaneScheduler(["a"], starvation_limit=3)
    for ln in s.order():
        s.empty(ln)
    assert keys(s) == []
    s.notify("a", "low")
    assert keys(s) == [("a", "low")]
    s.mark_all()
    assert len(keys(s)) == 3


def test_low_lane_first_after_being_passed_over_k_times() -> None:
    s = LaneScheduler(["a"], starvation_limit=3)
    high = s.lane("a", "high")
    assert high is not None
    served = []
    for _ in range(10):
        first = s.order()[0]
        s.served(first)
        served.append(first.priority)
    # default and low are passed over 3 times (K), then go first, default before low
    assert served == ["high"] * 3 + ["default", "low"] + ["high"] * 3 + ["default", "low"]


def test_types_of_equal_priority_rotate() -> None:
    s = LaneScheduler(["a", "b"], starvation_limit=100)
    firsts = {s.order()[0].job_type for _ in range(4)}
    assert firsts == {"a", "b"}
