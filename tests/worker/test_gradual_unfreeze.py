"""``gradual_unfreeze``: head first, then one group per phase, top down; discriminative LRs."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import torch

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import GradualUnfreezeStrategy
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.serving.predictor import load_predictor
from worker.strategies import toolkit
from worker.strategies.gradual_unfreeze import slanted_triangular
from worker.strategies.registry import train_model
from worker.testing import FILLER_WORDS
from worker.training.callbacks import NullCallbacks, TrainingReleased
from worker.training.checkpoint import Checkpointer
from worker.training.recipe import TrainedModel

#: the tiny BERT's layer groups, top down, and the parameter-name prefixes of each
GROUPS = ["head", "layer.1", "layer.0", "embeddings"]
PREFIXES: dict[str, tuple[str, ...]] = {
    "head": ("bert.pooler.", "classifier."),
    "layer.1": ("bert.encoder.layer.1.",),
    "layer.0": ("bert.encoder.layer.0.",),
    "embeddings": ("bert.embeddings.",),
}
State = dict[str, torch.Tensor]


def _group_of(name: str) -> str:
    return next(group for group, prefixes in PREFIXES.items() if name.startswith(prefixes))


class _Events(NullCallbacks):
    def __init__(self) -> None:
        self.unfreezes: list[dict[str, Any]] = []

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        if kind == "unfreeze":
            self.unfreezes.append(dict(data or {}))


class _Spy:
    """Wraps the toolkit's ``fit``: before each step, the weights and per-group rates."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.before_step: list[tuple[int, int, State]] = []
        self.rates: list[dict[str, float]] = []
        real_fit: Callable[..., Any] = toolkit.fit

        def spy_fit(setup: Any, **kwargs: Any) -> Any:
            hook, model, optimizer = (kwargs[k] for k in ("on_step_begin", "model", "optimizer"))

            def wrapped(epoch: int, steps_done: int) -> None:
                hook(epoch, steps_done)
                state = {n: p.detach().clone() for n, p in model.named_parameters()}
                self.before_step.append((epoch, steps_done, state))
                self.rates.append({g["group"]: g["lr"] for g in optimizer.param_groups})

            return real_fit(setup, **{**kwargs, "on_step_begin": wrapped})

        monkeypatch.setattr(toolkit, "fit", spy_fit)


def _train(
    base: Path,
    config: GradualUnfreezeStrategy,
    split: tuple[Examples, Examples, list[str]],
    *,
    task: str = "text-classification",
    callbacks: Any = None,
    checkpoint: Checkpointer | None = None,
    **hp: Any,
) -> TrainedModel:
    train, validation, labels = split
    settings: dict[str, Any] = {"batch_size": 8, "learning_rate": 3e-3, **hp}
    return train_model(
        base_model_dir=base,
        task=task,
        label_names=labels,
        train=train,
        validation=validation,
        strategy=config,
        hp=Hyperparameters(**settings),
        callbacks=callbacks or NullCallbacks(),
        checkpoint=checkpoint,
    )


def _changes(before: State, after: State) -> dict[str, set[bool]]:
    """Per group: the set of "changed?" answers over its tensors ({True}: all changed)."""
    result: dict[str, set[bool]] = {}
    for name, tensor in before.items():
        changed = not torch.equal(tensor, after[name].detach())
        result.setdefault(_group_of(name), set()).add(changed)
    return result


def _assert_exactly(changes: dict[str, set[bool]], trained: int, where: str) -> None:
    for index, group in enumerate(GROUPS):
        expected = {True} if index < trained else {False}
        assert changes[group] == expected, (where, group, changes[group])


def _final(trained: TrainedModel) -> State:
    return {n: p.detach().clone() for n, p in trained.model.named_parameters()}


def test_step_unit_unfreezes_top_down_with_discriminative_rates(
    tiny_bert_dir: Path, learnable_split: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy, events = _Spy(monkeypatch), _Events()
    config = GradualUnfreezeStrategy(unfreeze_every=2, unfreeze_unit="step")
    # 30 examples, batches of 8: 4 steps an epoch, 8 steps; phases of 2 steps each
    trained = _train(tiny_bert_dir, config, learnable_split(20), callbacks=events, epochs=2)
    states = [state for _, _, state in spy.before_step] + [_final(trained)]
    assert [steps for _, steps, _ in spy.before_step] == list(range(8))
    for step in range(8):
        # every step moves exactly the groups of its phase, all of their tensors
        _assert_exactly(_changes(states[step], states[step + 1]), step // 2 + 1, f"step {step}")
    assert events.unfreezes == [
        {"group": "layer.1", "epoch": 1, "step": 2, "trainable_groups": 2},
        {"group": "layer.0", "epoch": 2, "step": 4, "trainable_groups": 3},
        {"group": "embeddings", "epoch": 2, "step": 6, "trainable_groups": 4},
    ]
    # discriminative rates: group k gets lr / 2.6**k at every step; the schedule scales all
    peak = slanted_triangular(8, config.cut_frac)
    for step, rates in enumerate(spy.rates):
        for k, group in enumerate(GROUPS):
            assert rates[group] == pytest.approx(3e-3 * peak(step) / 2.6**k, rel=1e-9)


def test_epoch_unit_phase_boundaries(
    tiny_bert_dir: Path, learnable_split: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy, events = _Spy(monkeypatch), _Events()
    config = GradualUnfreezeStrategy(lr_decay_factor=2.0, slanted_triangular=False)
    # 18 examples, batches of 8: 3 steps an epoch; four epochs, one more group each
    trained = _train(tiny_bert_dir, config, learnable_split(12), callbacks=events, epochs=4)
    first_of_epoch: dict[int, State] = {}
    for epoch, _, state in spy.before_step:
        first_of_epoch.setdefault(epoch, state)
    boundaries = [first_of_epoch[epoch] for epoch in (1, 2, 3, 4)] + [_final(trained)]
    for epoch in (1, 2, 3, 4):
        changes = _changes(boundaries[epoch - 1], boundaries[epoch])
        _assert_exactly(changes, epoch, f"epoch {epoch}")
    assert [(e["group"], e["epoch"], e["step"]) for e in events.unfreezes] == [
        ("layer.1", 2, 3),
        ("layer.0", 3, 6),
        ("embeddings", 4, 9),
    ]
    initial = spy.rates[0]  # warmup: every group starts at 0
    assert set(initial.values()) == {0.0}
    for rates in spy.rates[1:]:
        for k, group in enumerate(GROUPS):
            assert rates[group] == pytest.approx(rates["head"] / 2.0**k, rel=1e-9)
    assert trained.kind == "full"


def test_slanted_triangular_shape() -> None:
    multiplier = slanted_triangular(100, 0.1)
    values = [multiplier(t) for t in range(101)]
    assert values[0] == pytest.approx(1 / 32)
    assert max(values) == values[10] == pytest.approx(1.0)
    assert values[100] == pytest.approx(1 / 32)
    assert all(a < b for a, b in pairwise(values[:11]))
    assert all(a > b for a, b in pairwise(values[10:]))


def test_multilabel_trains_and_artifact_predicts(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts, labels = [], []
    for index in range(48):
        kind = index % 3
        words = [FILLER_WORDS[(index * 5 + j) % 100] for j in range(3)]
        words += ["alpha"] * 2 * (kind != 1) + ["beta"] * 2 * (kind != 0)
        texts.append(" ".join(words))
        labels.append({0: [0], 1: [1], 2: [0, 1]}[kind])
    split = (Examples(texts[:36], labels[:36]), Examples(texts[36:], labels[36:]), ["a", "b"])
    config = GradualUnfreezeStrategy(unfreeze_every=3, unfreeze_unit="step")
    trained = _train(tiny_bert_dir, config, split, task="text-multilabel", epochs=3)
    assert {"val_micro_f1", "val_subset_accuracy"} <= set(trained.metrics)
    dest = write_artifact(trained, tmp_path / "gu", manifest={"base_model": {"id": "t"}})
    predictions = load_predictor(dest).predict(split[1].texts)
    assert len(predictions) == 12
    assert all(set(p["labels"]) <= {"a", "b"} for p in predictions)


class _ReleaseAt(_Events):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        if step == self.step:
            raise TrainingReleased("shutting down")


def test_resumed_run_keeps_the_phase(
    tiny_bert_dir: Path, learnable_split: Any, tmp_path: Path
) -> None:
    config = GradualUnfreezeStrategy(unfreeze_every=2, unfreeze_unit="step")
    split = learnable_split(20)  # 4 steps an epoch, 8 in all; released in phase 2
    clean = _train(tiny_bert_dir, config, split, epochs=2)
    checkpoints = Checkpointer(tmp_path / "ckpt", every_steps=2)
    stop = _ReleaseAt(5)
    with pytest.raises(TrainingReleased):
        _train(tiny_bert_dir, config, split, epochs=2, checkpoint=checkpoints, callbacks=stop)
    resumed_events = _ReleaseAt(-1)
    resumed = _train(
        tiny_bert_dir, config, split, epochs=2, checkpoint=checkpoints, callbacks=resumed_events
    )
    for name, tensor in clean.model.state_dict().items():
        assert torch.allclose(tensor, resumed.model.state_dict()[name], atol=1e-6), name
    # the groups unfrozen before the release are not announced again
    assert [e["group"] for e in resumed_events.unfreezes] == ["embeddings"]
