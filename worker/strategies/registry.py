"""Strategy implementations by API name (must equal ``app.jobs.strategies.STRATEGY_NAMES``)."""

from __future__ import annotations

from worker.strategies.base import Strategy
from worker.strategies.contrastive import Contrastive
from worker.strategies.dann import DomainAdversarial
from worker.strategies.dapt import DomainAdaptivePretraining
from worker.strategies.full import FullFineTune
from worker.strategies.gradual_unfreeze import GradualUnfreeze
from worker.strategies.linear_probe import LinearProbe
from worker.strategies.lora import LoraFineTune
from worker.strategies.partial import PartialFineTune

STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (
        FullFineTune(),
        LinearProbe(),
        LoraFineTune(),
        DomainAdversarial(),
        DomainAdaptivePretraining(),
        Contrastive(),
        PartialFineTune(),
        GradualUnfreeze(),
    )
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") from None
