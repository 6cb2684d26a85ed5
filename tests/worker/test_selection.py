"""Early stopping and best-evaluation selection in ``fit`` on a crafted validation curve.

The model is one weight ``w``: logits ``[w, 0]`` for every example. Every training label is
class 0, so plain SGD pushes ``w`` up by the same amount each step. A share ``p`` of the
validation examples is class 0, so the validation loss is lowest where ``sigmoid(w) = p``:
it falls while ``w`` climbs towards ``logit(p)`` and rises after, a curve with one known
minimum.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from app.contract.hyperparameters import Hyperparameters
from worker.core.data import Examples
from worker.training.callbacks import NullCallbacks, TrainingReleased
from worker.training.checkpoint import Checkpointer
from worker.training.loop import fit
from worker.training.recipe import TrainingSetup
from worker.training.selection import EvalPlan

P_CLASS0 = 0.8  # validation loss is lowest at w = logit(0.8) = 1.386


class OneWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.w * x, torch.zeros_like(x)], dim=-1)


class Recorder(NullCallbacks):
    def __init__(self, model: OneWeight, release_at_step: int | None = None) -> None:
        self.model = model
        self.release_at_step = release_at_step
        self.weights: dict[int, float] = {}
        self.events: list[str] = []

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        if step == self.release_at_step:
            self.release_at_step = None
            raise TrainingReleased("stop here")

    def on_epoch_end(self, *, epoch: int, step: int, total_steps: int, metrics: Any) -> None:
        self.weights[epoch] = float(self.model.w.detach())

    def on_event(self, kind: str, message: str, data: Any = None) -> None:
        self.events.append(kind)


def _run(
    plan: EvalPlan,
    *,
    epochs: int = 10,
    checkpoint: Checkpointer | None = None,
    model: OneWeight | None = None,
    release_at_step: int | None = None,
) -> tuple[Any, OneWeight, Recorder]:
    torch.manual_seed(0)
    model = model or OneWeight()
    train = DataLoader(TensorDataset(torch.ones(4), torch.zeros(4, dtype=torch.long)), batch_size=2)
    n_val = 10
    val_labels = torch.tensor([0] * int(P_CLASS0 * n_val) + [1] * (n_val - int(P_CLASS0 * n_val)))
    val = DataLoader(TensorDataset(torch.ones(n_val), val_labels), batch_size=5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    recorder = Recorder(model, release_at_step)
    setup = TrainingSetup(
        base_model_dir=Path("."),
        task="text-classification",
        label_names=["a", "b"],
        train=Examples([], []),
        validation=Examples([], []),
        # a bound far above this one weight's gradients: clipping never acts
        hp=Hyperparameters(epochs=epochs, max_grad_norm=100.0),
        callbacks=recorder,
        device=torch.device("cpu"),
        tokenizer=None,
        checkpoint=checkpoint,
        plan=plan,
    )
    result = fit(
        setup,
        model=model,
        forward=model,
        train_loader=train,
        val_loader=val,
        optimizer=optimizer,
        scheduler=None,
    )
    return result, model, recorder


def _best_epoch_without_stopping() -> tuple[int, list[float], dict[int, float]]:
    result, _, recorder = _run(EvalPlan(patience=None, restore_best=False))
    losses = [h["val_loss"] for h in result.history]
    return 1 + losses.index(min(losses)), losses, recorder.weights


def test_the_crafted_curve_has_one_interior_minimum() -> None:
    best, losses, weights = _best_epoch_without_stopping()
    assert 2 <= best <= 6, losses
    assert all(a > b for a, b in itertools.pairwise(losses[:best]))
    assert all(a < b for a, b in itertools.pairwise(losses[best - 1 :]))
    assert abs(weights[best] - math.log(P_CLASS0 / (1 - P_CLASS0))) < 0.5


def test_early_stopping_stops_after_patience_and_serves_the_best_epoch() -> None:
    best, losses, weights = _best_epoch_without_stopping()
    result, model, recorder = _run(EvalPlan(metric="val_loss", mode="min", patience=2))
    assert [h["epoch"] for h in result.history] == [float(e) for e in range(1, best + 3)]
    assert result.selection["stopped_early"] is True
    assert result.selection["selected_epoch"] == best
    assert result.selection["last_epoch"] == best + 2
    assert result.selection["selected"]["val_loss"] == pytest.approx(losses[best - 1])
    assert result.selection["last"]["val_loss"] == pytest.approx(losses[best + 1])
    assert result.metrics["epoch"] == best
    # the model holds the selected epoch's weights, not the last one's
    assert float(model.w.detach()) == pytest.approx(weights[best], abs=1e-7)
    assert float(model.w) != pytest.approx(recorder.weights[best + 2])
    assert "early_stopped" in recorder.events and "best_restored" in recorder.events


def test_selection_by_a_max_metric_keeps_the_first_of_equals() -> None:
    # accuracy is 0.8 from the first step on (every prediction is class 0): an equal value is
    # no improvement, so patience 3 stops at epoch 4 serving epoch 1
    result, model, recorder = _run(EvalPlan(metric="val_accuracy", mode="max", patience=3))
    assert result.selection["selected_epoch"] == 1
    assert result.selection["last_epoch"] == 4
    assert float(model.w) == pytest.approx(recorder.weights[1])


def test_restore_best_off_serves_the_last_weights() -> None:
    result, model, recorder = _run(EvalPlan(patience=None, restore_best=False), epochs=6)
    assert result.selection["selected_epoch"] == 6
    assert float(model.w) == pytest.approx(recorder.weights[6])


def test_step_evaluations_count_for_selection() -> None:
    # two steps per epoch: evaluating every step doubles the evaluations; the selected one may
    # fall mid-epoch (a fractional epoch)
    result, _, _ = _run(EvalPlan(patience=2, eval_every_steps=1))
    epochs = [h["epoch"] for h in result.history]
    assert 0.5 in epochs and 1.0 in epochs
    losses = [h["val_loss"] for h in result.history]
    best = losses.index(min(losses))
    assert result.selection["selected_epoch"] == epochs[best]
    assert len(epochs) == best + 3  # stopped two evaluations after the best


def test_a_resumed_run_still_serves_the_best_weights(tmp_path: Path) -> None:
    best, _, weights = _best_epoch_without_stopping()
    plan = EvalPlan(patience=None)  # run every epoch; the best is interior
    checkpoint = Checkpointer(tmp_path, every_steps=1)
    model = OneWeight()
    with pytest.raises(TrainingReleased):  # interrupted two epochs after the best one
        _run(plan, checkpoint=checkpoint, model=model, release_at_step=2 * (best + 2) + 1)
    assert list(tmp_path.glob("best-step-*")), "the best weights are kept beside checkpoints"
    fresh = OneWeight()  # a new process: nothing in memory
    result, fresh, recorder = _run(plan, checkpoint=checkpoint, model=fresh)
    assert "resumed" in recorder.events
    assert result.selection["selected_epoch"] == best
    assert float(fresh.w) == pytest.approx(weights[best], abs=1e-7)
