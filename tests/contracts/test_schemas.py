"""The committed JSON Schemas match the contract models, and contracts behave."""

import random

import pytest

from arforge.shared.contracts import Registry, RetryPolicy
from arforge.shared.contracts.schemas import SCHEMA_DIR, generate


def test_committed_schemas_are_current() -> None:
    expected = generate()
    committed = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    stale = sorted(n for n in expected if committed.get(n) != expected[n])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, (
        f"stale schemas {stale}, extra {extra}: run `python -m arforge.shared.contracts.schemas`"
    )


def test_seed_policies() -> None:
    reg = Registry()
    got = {s.type: (s.policy.delays_s, s.policy.timeout_s) for s in reg}
    assert got == {
        "photogrammetry": ((60, 120, 300), 3600),
        "splatting": ((300, 600), 7200),
        "ai-vision": ((10, 30), 180),
        "ai-generation": ((30, 60), 600),
        "mesh": ((60, 120), 1800),
    }
    assert reg["photogrammetry"].policy.max_attempts == 4


def test_backoff_delay_within_jitter() -> None:
    p = RetryPolicy(delays_s=(60, 120, 300), timeout_s=10, jitter=0.1)
    rng = random.Random(1)
    for attempt, base in [(1, 60), (2, 120), (3, 300), (7, 300)]:
        for _ in range(50):
            d = p.delay_for(attempt, rng)
            assert base <= d <= base * 1.1


def test_policy_overrides_from_settings_shape() -> None:
    reg = Registry().with_overrides({"mesh": {"delays_s": [1, 2, 3], "timeout_s": 5}})
    assert reg["mesh"].policy.delays_s == (1, 2, 3)
    assert reg["mesh"].policy.timeout_s == 5
    assert reg["photogrammetry"].policy.delays_s == (60, 120, 300)


def test_params_reject_unknown_fields() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Registry()["photogrammetry"].params.model_validate({"qualty": "high"})
