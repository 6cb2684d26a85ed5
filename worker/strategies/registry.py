"""Strategy implementations by API name (must equal ``app.contract.strategies.STRATEGY_NAMES``),
and :func:`train_model`, which runs the one named by a job's config.

The dispatch from a name to its implementation lives here, above the strategies, so nothing
below imports this module: ``worker.training.loop`` prepares the setup and ``dapt`` gets its
downstream lookup from here (tests/unit/test_import_rules.py keeps the graph acyclic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, cast

from app.contract.strategies import AnyStrategy
from worker.strategies.base import Strategy
from worker.strategies.contrastive import Contrastive
from worker.strategies.dann import DomainAdversarial
from worker.strategies.dapt import DomainAdaptivePretraining
from worker.strategies.full import FullFineTune
from worker.strategies.gradual_unfreeze import GradualUnfreeze
from worker.strategies.linear_probe import LinearProbe
from worker.strategies.lora import LoraFineTune
from worker.strategies.partial import PartialFineTune
from worker.training.loop import TrainedModel, TrainingSetup, prepare_setup

P = ParamSpec("P")


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") from None


STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (
        FullFineTune(),
        LinearProbe(),
        LoraFineTune(),
        DomainAdversarial(),
        # looks its downstream strategy up here when it runs (so a replaced entry is used)
        DomainAdaptivePretraining(downstream=get_strategy),
        Contrastive(),
        PartialFineTune(),
        GradualUnfreeze(),
    )
}


def _then_train(prepare: Callable[P, TrainingSetup]) -> Callable[P, TrainedModel]:
    def train_model(*args: P.args, **kwargs: P.kwargs) -> TrainedModel:
        """Fine-tune the base model with the strategy its config names: the arguments are
        :func:`worker.training.loop.prepare_setup`'s, which checks them and resolves the
        setup; the named implementation then trains on it."""
        config = cast(AnyStrategy, kwargs["strategy"])
        return get_strategy(config.name).train(prepare(*args, **kwargs), config)

    return train_model


train_model = _then_train(prepare_setup)
