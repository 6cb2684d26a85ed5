"""The worker's registry implements exactly the API's strategy names."""

from __future__ import annotations

import pytest

from app.contract.strategies import STRATEGY_NAMES
from worker.strategies.registry import STRATEGIES, get_strategy


def test_registry_matches_api_names() -> None:
    assert set(STRATEGIES) == set(STRATEGY_NAMES)
    assert get_strategy("full").artifact_kind == "full"
    assert get_strategy("linear_probe").artifact_kind == "head"
    with pytest.raises(KeyError, match="unknown strategy"):
        get_strategy("nope")
