"""Checkpoints: a run interrupted at a step boundary and resumed ends where a clean run does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import FullStrategy, LinearProbeStrategy
from tests.worker.conftest import make_split
from worker.strategies.registry import train_model
from worker.training.callbacks import NullCallbacks, TrainingReleased
from worker.training.checkpoint import Checkpointer
from worker.training.recipe import TrainedModel


class StopAt(NullCallbacks):
    """Releases the job (as a worker shutdown does) once ``step`` is reached."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.events: list[str] = []

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        if step == self.step:
            raise TrainingReleased("shutting down")

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append(kind)


def _train(
    base: Path, strategy: Any, checkpoint: Checkpointer | None, callbacks: Any = None
) -> TrainedModel:
    train, validation, labels = make_split(n_per_class=24, seed=3)
    lr = 3e-3 if isinstance(strategy, FullStrategy) else 1e-2
    return train_model(
        base_model_dir=base,
        task="text-classification",
        label_names=labels,
        train=train,
        validation=validation,
        strategy=strategy,
        hp=Hyperparameters(epochs=3, batch_size=8, learning_rate=lr, seed=7),
        callbacks=callbacks or NullCallbacks(),
        checkpoint=checkpoint,
    )


@pytest.mark.parametrize(
    "strategy", [FullStrategy(), LinearProbeStrategy()], ids=["full", "linear_probe"]
)
@pytest.mark.parametrize("stop_at", [4, 6], ids=["mid-epoch", "epoch-boundary"])
def test_resumed_run_matches_an_uninterrupted_one(
    tiny_bert_dir: Path, tmp_path: Path, strategy: Any, stop_at: int
) -> None:
    clean = _train(tiny_bert_dir, strategy, None)
    checkpoints = Checkpointer(tmp_path / "ckpt", every_steps=2)
    with pytest.raises(TrainingReleased):
        _train(tiny_bert_dir, strategy, checkpoints, StopAt(stop_at))
    latest = checkpoints.latest()
    assert latest is not None and latest.name == f"step-{stop_at:08d}"
    assert sorted(p.name for p in latest.iterdir()) == [
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
        "weights.safetensors",
    ]  # tensors in safetensors, the rest JSON: no pickle
    recorder = StopAt(-1)
    resumed = _train(tiny_bert_dir, strategy, checkpoints, recorder)
    assert recorder.events.count("resumed") == 1
    for (name, a), (_, b) in zip(
        clean.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
    assert abs(clean.metrics["val_loss"] - resumed.metrics["val_loss"]) < 1e-6
    assert [h["val_accuracy"] for h in clean.history] == [
        h["val_accuracy"] for h in resumed.history
    ]


def test_old_checkpoints_are_pruned_keeping_latest_and_best(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    checkpoints = Checkpointer(tmp_path / "ckpt", every_steps=1)
    _train(tiny_bert_dir, LinearProbeStrategy(), checkpoints)
    kept = checkpoints.checkpoints()
    assert 1 <= len(kept) <= 2
    states = [json.loads((p / "state.json").read_text()) for p in kept]
    assert states[-1]["step"] == max(s["step"] for s in states)
    assert not list((tmp_path / "ckpt").glob(".tmp-*"))
