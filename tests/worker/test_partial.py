"""``partial``: embeddings and lower layers bit-identical; top layers and head train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import PartialStrategy
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.core.device import seed_everything
from worker.serving.predictor import load_predictor
from worker.strategies.registry import train_model
from worker.training.callbacks import NullCallbacks
from worker.training.recipe import TrainedModel

GROUP_PREFIXES: dict[str, str | tuple[str, ...]] = {
    "embeddings": "bert.embeddings.",
    "layer.0": "bert.encoder.layer.0.",
    "layer.1": "bert.encoder.layer.1.",
    "head": ("bert.pooler.", "classifier."),
}


class _Events(NullCallbacks):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((kind, data or {}))


def _train(
    base: Path,
    trainable_layers: int,
    *,
    split: tuple[Examples, Examples, list[str]],
    task: str = "text-classification",
    callbacks: Any = None,
    **hp: Any,
) -> TrainedModel:
    train, validation, labels = split
    settings: dict[str, Any] = {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3, **hp}
    return train_model(
        base_model_dir=base,
        task=task,
        label_names=labels,
        train=train,
        validation=validation,
        strategy=PartialStrategy(trainable_layers=trainable_layers),
        hp=Hyperparameters(**settings),
        callbacks=callbacks or NullCallbacks(),
    )


def _changed_groups(base: Path, trained: TrainedModel, seed: int = 0) -> dict[str, set[bool]]:
    """Per group: the set of "changed?" answers over its tensors ({True}: all changed)."""
    seed_everything(seed)  # as train_model does, so the fresh head starts where training did
    before = dict(
        AutoModelForSequenceClassification.from_pretrained(
            base, use_safetensors=True, num_labels=2
        ).named_parameters()
    )
    result: dict[str, set[bool]] = {}
    for name, parameter in trained.model.named_parameters():
        group = next(g for g, prefix in GROUP_PREFIXES.items() if name.startswith(prefix))
        changed = not torch.equal(parameter.detach().cpu(), before[name].detach())
        result.setdefault(group, set()).add(changed)
    assert set(result) == set(GROUP_PREFIXES)
    return result


@pytest.mark.parametrize(
    ("trainable_layers", "trained_groups"),
    [
        (1, {"head", "layer.1"}),
        (0, {"head"}),
        (5, {"head", "layer.1", "layer.0"}),  # more than the model has: all but embeddings
    ],
)
def test_only_head_and_top_layers_change(
    tiny_bert_dir: Path,
    learnable_split: Any,
    trainable_layers: int,
    trained_groups: set[str],
) -> None:
    callbacks = _Events()
    trained = _train(tiny_bert_dir, trainable_layers, split=learnable_split(), callbacks=callbacks)
    changed = _changed_groups(tiny_bert_dir, trained)
    for group, answers in changed.items():
        expected = {True} if group in trained_groups else {False}
        assert answers == expected, (group, answers)
    requires = {name for name, p in trained.model.named_parameters() if p.requires_grad}
    assert not any(name.startswith("bert.embeddings.") for name in requires)
    (kind, data), *_ = callbacks.events
    assert kind == "frozen"
    assert set(data["trainable_groups"]) == trained_groups
    assert trained.kind == "full"


def test_partial_learns_and_artifact_predicts(
    tiny_bert_dir: Path, learnable_split: Any, tmp_path: Path
) -> None:
    trained = _train(tiny_bert_dir, 1, split=learnable_split(), epochs=3)
    assert trained.metrics["val_accuracy"] >= 0.9
    dest = write_artifact(trained, tmp_path / "partial", manifest={"base_model": {"id": "t"}})
    validation = learnable_split()[1]
    predicted = [p["label"] for p in load_predictor(dest).predict(validation.texts)]
    truth = ["AB"[int(label)] for label in validation.labels]
    assert sum(p == t for p, t in zip(predicted, truth, strict=True)) >= 0.9 * len(truth)


def test_partial_text_pairs(tiny_bert_dir: Path, learnable_split: Any, tmp_path: Path) -> None:
    # a smoke test: pairs tokenized as pairs train and serve (labels alternate)
    train, validation, labels = learnable_split(n_per_class=12)

    def pairs(split: Examples) -> Examples:
        seconds = [
            text.replace("alpha", "beta") if i % 2 else text for i, text in enumerate(split.texts)
        ]
        return Examples(split.texts, [i % 2 for i in range(len(split))], seconds)

    trained = _train(
        tiny_bert_dir,
        1,
        split=(pairs(train), pairs(validation), labels),
        task="text-pair-classification",
        epochs=1,
    )
    assert _changed_groups(tiny_bert_dir, trained)["layer.0"] == {False}
    dest = write_artifact(trained, tmp_path / "pairs", manifest={"base_model": {"id": "t"}})
    predictions = load_predictor(dest).predict([("alpha kaka", "beta lolo")] * 2)
    assert all(p["label"] in labels for p in predictions)
