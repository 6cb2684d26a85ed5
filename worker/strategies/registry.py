"""Strategy implementations by API name (must equal ``app.jobs.strategies.STRATEGY_NAMES``)."""

from __future__ import annotations

from worker.strategies.base import Strategy
from worker.strategies.full import FullFineTune
from worker.strategies.linear_probe import LinearProbe

STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy for strategy in (FullFineTune(), LinearProbe())
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") from None
