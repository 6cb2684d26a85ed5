"""Every strategy, registered: importing this module imports each strategy module (each
registers itself with :func:`worker.training.recipe.register`), and :func:`train_model` runs
the one a job's config names.

The registry itself (:data:`STRATEGIES`, :func:`get_strategy`) lives in
:mod:`worker.training.recipe`, below the strategies, so a strategy that needs another
(``dapt`` and its downstream) looks it up there without importing this module.
tests/unit/test_import_rules.py keeps the graph acyclic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, cast

from app.contract.strategies import STRATEGY_NAMES, AnyStrategy
from worker.strategies import (  # noqa: F401  (each registers itself when imported)
    auto,
    contrastive,
    dann,
    dapt,
    full,
    gradual_unfreeze,
    linear_probe,
    lora,
    partial,
    zero_shot,
)
from worker.training.prepare import prepare_setup
from worker.training.recipe import STRATEGIES, TrainedModel, TrainingSetup
from worker.training.recipe import strategy_named as get_strategy

__all__ = ["STRATEGIES", "get_strategy", "train_model"]

if set(STRATEGIES) != STRATEGY_NAMES:
    raise RuntimeError(
        f"registered strategies {sorted(STRATEGIES)} differ from the API's {sorted(STRATEGY_NAMES)}"
    )

P = ParamSpec("P")


def _then_train(prepare: Callable[P, TrainingSetup]) -> Callable[P, TrainedModel]:
    def train_model(*args: P.args, **kwargs: P.kwargs) -> TrainedModel:
        """Fine-tune the base model with the strategy its config names: the arguments are
        :func:`worker.training.prepare.prepare_setup`'s, which checks them and resolves the
        setup; the named implementation then trains on it."""
        config = cast(AnyStrategy, kwargs["strategy"])
        return get_strategy(config.name).train(prepare(*args, **kwargs), config)

    return train_model


train_model = _then_train(prepare_setup)
