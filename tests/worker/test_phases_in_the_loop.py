"""dapt's MLM phase, contrastive's pair phase and dann's adversarial training run in the one
loop (``worker.training.loop.fit``): they checkpoint, resume where they were released, and
dann evaluates every ``eval_every_steps``. Before the recipe layer each had a loop of its own
with none of that: a released job ran the phase again from the start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import ContrastiveStrategy, DannStrategy, DaptStrategy
from worker.core.data import Examples
from worker.core.device import seed_everything
from worker.strategies.registry import train_model
from worker.testing import learnable_examples
from worker.training.callbacks import NullCallbacks, TrainingReleased
from worker.training.checkpoint import Checkpointer
from worker.training.recipe import TrainedModel

LABELS = ["A", "B"]


class _Releaser(NullCallbacks):
    """Releases the job (as a worker shutting down does) at ``(phase, done)``; records."""

    def __init__(self, at: tuple[str, int] | None = None) -> None:
        self.at = at
        self.progress: list[tuple[str, int]] = []
        self.events: list[tuple[str, dict[str, Any] | None]] = []
        self.evaluations: list[float] = []

    def on_phase_progress(self, *, phase: str, done: int, total: int) -> None:
        self.progress.append((phase, done))
        if (phase, done) == self.at:
            raise TrainingReleased("worker shutting down")

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        self.progress.append(("training", step))
        if ("training", step) == self.at:
            raise TrainingReleased("worker shutting down")

    def on_evaluation(self, *, epoch: float, step: int, metrics: dict[str, float]) -> None:
        self.evaluations.append(epoch)

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((kind, data))


def _train(
    base: Path, strategy: Any, callbacks: Any, checkpoint: Checkpointer | None, **hp: Any
) -> TrainedModel:
    texts, names = learnable_examples(24, seed=3)
    labels = [LABELS.index(name) for name in names]
    train = Examples(texts[:36], labels[:36])
    validation = Examples(texts[36:], labels[36:])
    return train_model(
        base_model_dir=base,
        task="text-classification",
        label_names=LABELS,
        train=train,
        validation=validation,
        strategy=strategy,
        hp=Hyperparameters(**{"epochs": 2, "batch_size": 8, "seed": 0, **hp}),
        callbacks=callbacks,
        checkpoint=checkpoint,
        aux_texts={"unlabeled_dataset_id": texts, "target_dataset_id": texts},
    )


def _released_then_resumed(
    base: Path, strategy: Any, at: tuple[str, int], tmp_path: Path, **hp: Any
) -> tuple[TrainedModel, _Releaser]:
    checkpoint = Checkpointer(tmp_path / "ckpt", every_steps=1000)
    seed_everything(0)
    with pytest.raises(TrainingReleased):
        _train(base, strategy, _Releaser(at), checkpoint, **hp)
    resumed = _Releaser()
    return _train(base, strategy, resumed, checkpoint, **hp), resumed


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    left, right = a.state_dict(), b.state_dict()
    assert left.keys() == right.keys()
    for name, tensor in left.items():
        torch.testing.assert_close(tensor, right[name], rtol=0, atol=1e-6, msg=name)


def test_dapt_mlm_phase_resumes_where_it_was_released(tiny_bert_dir: Path, tmp_path: Path) -> None:
    strategy = DaptStrategy(unlabeled_dataset_id="u", mlm_steps=6, then="linear_probe")
    resumed, recorder = _released_then_resumed(tiny_bert_dir, strategy, ("mlm", 3), tmp_path)
    mlm = [done for phase, done in recorder.progress if phase == "mlm"]
    assert mlm == [3, 4, 5, 6]  # not 0..6: the phase went on from its checkpoint
    assert ("resumed", {"step": 3, "epoch": 1, "batch": 3}) in recorder.events
    seed_everything(0)
    uninterrupted = _train(tiny_bert_dir, strategy, NullCallbacks(), None)
    # masks are drawn when a batch trains: the resumed phase drew the same ones
    assert resumed.backbone is not None and uninterrupted.backbone is not None
    _same_weights(resumed.backbone, uninterrupted.backbone)
    _same_weights(resumed.model, uninterrupted.model)


def test_a_finished_pair_phase_is_skipped_on_resume(tiny_bert_dir: Path, tmp_path: Path) -> None:
    strategy = ContrastiveStrategy(num_pairs=40, pair_epochs=1, pair_learning_rate=1e-3)
    # released in the head's training, after the pair phase had finished
    resumed, recorder = _released_then_resumed(
        tiny_bert_dir, strategy, ("training", 3), tmp_path, learning_rate=1e-2
    )
    pairs = [done for phase, done in recorder.progress if phase == "contrastive_pairs"]
    assert pairs == [5]  # restored whole: no pair step ran again
    seed_everything(0)
    uninterrupted = _train(tiny_bert_dir, strategy, NullCallbacks(), None, learning_rate=1e-2)
    assert resumed.backbone is not None and uninterrupted.backbone is not None
    _same_weights(resumed.backbone, uninterrupted.backbone)
    _same_weights(resumed.model, uninterrupted.model)


def test_dann_checkpoints_and_evaluates_every_n_steps(tiny_bert_dir: Path, tmp_path: Path) -> None:
    strategy = DannStrategy(target_dataset_id="t")
    resumed, recorder = _released_then_resumed(
        tiny_bert_dir, strategy, ("training", 3), tmp_path, eval_every_steps=2, learning_rate=1e-3
    )
    steps = [done for phase, done in recorder.progress if phase == "training"]
    assert steps == [4, 5, 6, 7, 8, 9, 10]  # 5 steps an epoch; went on after step 3
    assert recorder.evaluations == [0.8, 1.2, 1.6]  # steps 4, 6 and 8 (not the epoch ends)
    assert [h["step"] for h in resumed.history] == [2.0, 4.0, 5.0, 6.0, 8.0, 10.0]
    assert {"domain_loss", "domain_accuracy", "label_loss", "lambda"} <= set(resumed.metrics)
