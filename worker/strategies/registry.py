"""Strategy implementations by API name (must equal ``app.jobs.strategies.STRATEGY_NAMES``),
and :func:`train_model`, which runs the one named by a job's config.

The dispatch from a name to its implementation lives here, above the strategies, so nothing
below imports this module: ``worker.training.loop`` prepares the setup and ``dapt`` gets its
downstream lookup from here (tests/unit/test_import_rules.py keeps the graph acyclic).
"""

from __future__ import annotations

from pathlib import Path

import torch

from app.jobs.strategies import AnyStrategy, Hyperparameters
from worker.features import FeatureCache
from worker.strategies.base import Strategy
from worker.strategies.contrastive import Contrastive
from worker.strategies.dann import DomainAdversarial
from worker.strategies.dapt import DomainAdaptivePretraining
from worker.strategies.full import FullFineTune
from worker.strategies.gradual_unfreeze import GradualUnfreeze
from worker.strategies.linear_probe import LinearProbe
from worker.strategies.lora import LoraFineTune
from worker.strategies.partial import PartialFineTune
from worker.training.callbacks import TrainingCallbacks
from worker.training.checkpoint import Checkpointer
from worker.training.data import Examples
from worker.training.loop import TrainedModel, prepare_setup


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


def train_model(
    *,
    base_model_dir: Path,
    task: str,
    label_names: list[str],
    train: Examples,
    validation: Examples,
    strategy: AnyStrategy,
    hp: Hyperparameters,
    callbacks: TrainingCallbacks,
    device: torch.device | None = None,
    aux_texts: dict[str, list[str]] | None = None,
    checkpoint: Checkpointer | None = None,
    feature_cache: FeatureCache | None = None,
) -> TrainedModel:
    """Fine-tune the base model in ``base_model_dir`` with ``strategy`` (its config names the
    implementation); see ``worker.training.loop`` for the setup and the loop."""
    setup = prepare_setup(
        base_model_dir=base_model_dir,
        task=task,
        label_names=label_names,
        train=train,
        validation=validation,
        strategy=strategy,
        hp=hp,
        callbacks=callbacks,
        device=device,
        aux_texts=aux_texts,
        checkpoint=checkpoint,
        feature_cache=feature_cache,
    )
    return get_strategy(strategy.name).train(setup, strategy)
