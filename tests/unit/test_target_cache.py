"""Predict's short memory of keys and models: expiry, bound, forgetting a deleted model."""

from __future__ import annotations

from app.models.targets import PredictTarget, TargetCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _target(model_id: str) -> PredictTarget:
    return PredictTarget(model_id, "ten_a", "text-classification", ["a", "b"], f"models/{model_id}")


def test_found_targets_expire() -> None:
    clock = Clock()
    cache = TargetCache(1.0, clock=clock)
    cache.put("h", "m1", _target("m1"))
    assert cache.get("h", "m1") == _target("m1")
    assert cache.get("other-key", "m1") is None
    clock.now += 1.0
    assert cache.get("h", "m1") is None


def test_zero_ttl_remembers_nothing() -> None:
    cache = TargetCache(0.0)
    cache.put("h", "m1", _target("m1"))
    assert cache.get("h", "m1") is None


def test_bounded_and_least_recent_first() -> None:
    cache = TargetCache(60.0, max_entries=3)
    for i in range(5):
        cache.put("h", f"m{i}", _target(f"m{i}"))
    assert [cache.get("h", f"m{i}") is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_forget_a_deleted_model_for_every_key() -> None:
    cache = TargetCache(60.0)
    for key in ("h1", "h2"):
        cache.put(key, "m1", _target("m1"))
        cache.put(key, "m2", _target("m2"))
    cache.forget_model("m1")
    assert cache.get("h1", "m1") is None and cache.get("h2", "m1") is None
    assert cache.get("h1", "m2") is not None
