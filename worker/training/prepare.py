"""From a job's inputs to a :class:`TrainingSetup`: checks, seeding, tokenizer, device, plan."""

from __future__ import annotations

from pathlib import Path

import torch

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import AnyStrategy
from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS
from worker.core.data import Examples, validate_examples
from worker.core.device import seed_everything, select_device
from worker.core.models import load_processor
from worker.features import FeatureCache
from worker.training.callbacks import TrainingCallbacks
from worker.training.checkpoint import Checkpointer
from worker.training.metrics import class_weight_tensor
from worker.training.recipe import TrainingSetup
from worker.training.selection import EvalPlan


def prepare_setup(
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
) -> TrainingSetup:
    """Check the inputs, seed, and resolve what ``strategy`` needs to train (the tokenizer, the
    device, the evaluation plan); the caller hands the setup to the strategy."""
    if task not in strategy.supported_tasks:
        raise ValueError(f"strategy {strategy.name!r} does not support task {task!r}")
    if len(label_names) < 2 and task not in MULTILABEL_TASKS:
        raise ValueError("a classification task needs at least two labels")
    validate_examples(train, task=task, num_labels=len(label_names), split="train")
    validate_examples(validation, task=task, num_labels=len(label_names), split="validation")
    if len(train) == 0:
        raise ValueError("the training split is empty")
    seed_everything(hp.seed)
    plan = EvalPlan.from_hyperparameters(
        hp,
        label_names=list(label_names),
        class_weights=class_weight_tensor(
            hp.class_weights,
            train,
            label_names=list(label_names),
            multilabel=task in MULTILABEL_TASKS,
        ),
    )
    return TrainingSetup(
        base_model_dir=Path(base_model_dir),
        task=task,
        label_names=list(label_names),
        train=train,
        validation=validation,
        hp=hp,
        callbacks=callbacks,
        device=select_device(device),
        tokenizer=load_processor(base_model_dir, images=task in IMAGE_TASKS),
        aux_texts=dict(aux_texts or {}),
        checkpoint=checkpoint,
        plan=plan,
        feature_cache=feature_cache,
    )
