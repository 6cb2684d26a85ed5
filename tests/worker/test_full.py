"""``full``: every weight trains; layer-wise LR decay; cancellation at a step boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from app.contract.strategies import FullStrategy
from worker.core.device import seed_everything
from worker.strategies.full import layer_depth, layerwise_decay
from worker.strategies.toolkit import adamw_groups
from worker.training.callbacks import NullCallbacks, TrainingCancelled


def _fresh_model(base: Path, seed: int) -> torch.nn.Module:
    # the same seeding and loading train_model does before training starts
    seed_everything(seed)
    return AutoModelForSequenceClassification.from_pretrained(
        base, use_safetensors=True, num_labels=2
    )


def test_full_changes_every_trainable_parameter(tiny_bert_dir: Path, trained_full: Any) -> None:
    before = dict(_fresh_model(tiny_bert_dir, 0).named_parameters())
    after = dict(trained_full.model.named_parameters())
    assert set(before) == set(after)
    unchanged = [
        name
        for name, parameter in after.items()
        if torch.equal(parameter.detach().cpu(), before[name].detach())
    ]
    assert unchanged == []
    assert all(parameter.requires_grad for parameter in after.values())
    assert set(trained_full.metrics) >= {
        "val_loss",
        "val_accuracy",
        "val_macro_f1",
        "train_loss",
        "epoch",
    }
    assert trained_full.metrics["val_accuracy"] >= 0.9


def test_layerwise_lr_decay_param_groups(tiny_bert_dir: Path) -> None:
    model = _fresh_model(tiny_bert_dir, 0)
    groups = adamw_groups(model, lr=1e-3, weight_decay=0.01, lr_scale=layerwise_decay(model, 0.5))
    rate_of = {name: group["lr"] for group in groups for name in group["names"]}
    decay_of = {name: group["weight_decay"] for group in groups for name in group["names"]}
    assert len(rate_of) == len(list(model.parameters()))
    expected_by_prefix = {
        "classifier.": 1e-3,
        "bert.pooler.": 1e-3,
        "bert.encoder.layer.1.": 1e-3,
        "bert.encoder.layer.0.": 5e-4,
        "bert.embeddings.": 2.5e-4,
    }
    for name, rate in rate_of.items():
        prefix = next(p for p in expected_by_prefix if name.startswith(p))
        assert rate == pytest.approx(expected_by_prefix[prefix]), name
    assert decay_of["bert.encoder.layer.0.attention.self.query.weight"] == 0.01
    assert decay_of["bert.encoder.layer.0.attention.self.query.bias"] == 0.0
    assert decay_of["bert.embeddings.LayerNorm.weight"] == 0.0
    assert decay_of["bert.encoder.layer.1.output.LayerNorm.weight"] == 0.0
    # each layer's rate is the rate of the layer above times the decay
    depths = sorted({group["group"] for group in groups})
    assert depths == ["depth-0", "depth-1", "depth-2"]
    assert layer_depth("bert.encoder.layer.0.output.dense.weight", 2) == 1


def test_layerwise_lr_decay_off_gives_one_rate(tiny_bert_dir: Path) -> None:
    model = _fresh_model(tiny_bert_dir, 0)
    groups = adamw_groups(model, lr=2e-5, weight_decay=0.01, lr_scale=layerwise_decay(model, 1.0))
    assert {group["lr"] for group in groups} == {2e-5}


def test_full_trains_with_layerwise_decay(tiny_bert_dir: Path, tiny_trainer: Any) -> None:
    trained = tiny_trainer(tiny_bert_dir, FullStrategy(layerwise_lr_decay=0.8), epochs=1)
    assert trained.kind == "full"


class _CancelAtStep(NullCallbacks):
    def __init__(self, stop_at: int) -> None:
        self.stop_at = stop_at
        self.steps: list[int] = []
        self.epochs_ended = 0

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        self.steps.append(step)
        if step == self.stop_at:
            raise TrainingCancelled("cancel requested")

    def on_epoch_end(self, **kwargs: Any) -> None:
        self.epochs_ended += 1


@pytest.mark.parametrize("strategy_name", ["full", "linear_probe"])
def test_cancel_stops_at_step_boundary(
    tiny_bert_dir: Path, tiny_trainer: Any, strategy_name: str
) -> None:
    from app.contract.strategies import LinearProbeStrategy

    strategy = FullStrategy() if strategy_name == "full" else LinearProbeStrategy()
    callbacks = _CancelAtStep(stop_at=2)
    with pytest.raises(TrainingCancelled):
        tiny_trainer(tiny_bert_dir, strategy, callbacks=callbacks, epochs=3)
    assert callbacks.steps == [1, 2]
    assert callbacks.epochs_ended == 0
