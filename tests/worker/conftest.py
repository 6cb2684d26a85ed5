"""Fixtures for worker tests: tiny random BERT directories and an easily learnable dataset."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import FullStrategy, LinearProbeStrategy, LoraStrategy
from worker.core.data import Examples
from worker.strategies.registry import train_model
from worker.testing import build_tiny_bert, learnable_examples
from worker.training.callbacks import NullCallbacks
from worker.training.recipe import TrainedModel

LABELS = ["A", "B"]
Split = tuple[Examples, Examples, list[str]]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain tiny BERT directory (pooling 'auto' means CLS)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_st_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT with a sentence-transformers ``1_Pooling/config.json`` saying mean."""
    return build_tiny_bert(
        tmp_path_factory.mktemp("tiny-st-bert"), sentence_transformers_pooling="mean"
    )


def make_split(n_per_class: int = 40, seed: int = 0, validation_share: float = 0.25) -> Split:
    """Train and validation examples of the alpha (A) / beta (B) task."""
    texts, names = learnable_examples(n_per_class, seed)
    labels = [LABELS.index(name) for name in names]
    cut = int(len(texts) * (1 - validation_share))
    return (
        Examples(texts[:cut], labels[:cut]),
        Examples(texts[cut:], labels[cut:]),
        list(LABELS),
    )


@pytest.fixture(scope="session")
def learnable_split() -> Callable[..., Split]:
    """``learnable_split(n_per_class=40, seed=0)`` -> (train, validation, label_names)."""
    return make_split


def train_tiny(
    base: Path,
    strategy: Any,
    *,
    split: Split | None = None,
    task: str = "text-classification",
    callbacks: Any = None,
    **hyperparameters: Any,
) -> TrainedModel:
    train, validation, labels = split or make_split()
    settings: dict[str, Any] = {"epochs": 3, "batch_size": 16}
    if isinstance(strategy, FullStrategy):
        settings["learning_rate"] = 3e-3
    else:
        settings["learning_rate"] = 1e-2
    settings.update(hyperparameters)
    return train_model(
        base_model_dir=base,
        task=task,
        label_names=labels,
        train=train,
        validation=validation,
        strategy=strategy,
        hp=Hyperparameters(**settings),
        callbacks=callbacks or NullCallbacks(),
    )


@pytest.fixture(scope="session")
def tiny_trainer() -> Callable[..., TrainedModel]:
    """``tiny_trainer(base_dir, strategy, split=None, task=..., callbacks=None, **hp)``."""
    return train_tiny


@pytest.fixture(scope="session")
def trained_full(tiny_bert_dir: Path) -> TrainedModel:
    return train_tiny(tiny_bert_dir, FullStrategy())


@pytest.fixture(scope="session")
def trained_probe(tiny_bert_dir: Path) -> TrainedModel:
    return train_tiny(tiny_bert_dir, LinearProbeStrategy(), epochs=5)


# -- serving: artifacts of several strategies over one tiny base, and an in-process batcher --

SERVED_STRATEGIES: dict[str, Any] = {
    "probe-cls": LinearProbeStrategy(pooling="cls"),
    "probe-mean": LinearProbeStrategy(pooling="mean"),
    "probe-pooler": LinearProbeStrategy(pooling="pooler"),
    "lora-r4": LoraStrategy(r=4),
    "lora-r8": LoraStrategy(r=8, alpha=8),
    "full": FullStrategy(),
}


@pytest.fixture(scope="session")
def served_artifacts(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of artifacts named as in :data:`SERVED_STRATEGIES` (each also a model id)."""
    from worker.artifacts import write_artifact

    root = tmp_path_factory.mktemp("served")
    for seed, (name, strategy) in enumerate(SERVED_STRATEGIES.items()):
        trained = train_tiny(
            tiny_bert_dir, strategy, split=make_split(seed=seed), learning_rate=1e-2, epochs=2
        )
        write_artifact(trained, root / name, manifest={"base_model": {"id": "tiny-bert"}})
    return root
