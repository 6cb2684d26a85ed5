"""``dann``: on a synthetic domain shift it beats source-only training on the target domain.

The shift: both domains mark the class with "alpha" (A) or "beta" (B) among shared filler
words, but each domain has its own boilerplate. In the source domain A texts also carry
"gamma gamma" and B texts "delta delta" (a spurious cue, as predictive as the label word); in
the target domain every text carries "gamma gamma". A source-only model learns the cue and
calls most target texts A; the domain classifier tells the domains apart by that cue, so the
reversed gradient pushes the encoder to drop it and keep the label words.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import DannStrategy, FullStrategy
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.serving.predictor import load_predictor
from worker.strategies.registry import train_model
from worker.testing import FILLER_WORDS
from worker.training.callbacks import NullCallbacks, TrainingCancelled
from worker.training.recipe import TrainedModel

LABELS = ["A", "B"]
HP = {"epochs": 8, "batch_size": 16, "learning_rate": 3e-3, "seed": 0}


def domain(n_per_class: int, seed: int, *, target: bool) -> Examples:
    rng = random.Random(seed)
    rows: list[tuple[str, int]] = []
    for label, word in enumerate(["alpha", "beta"]):
        cue = "gamma" if target or label == 0 else "delta"
        for _ in range(n_per_class):
            words = [*rng.choices(FILLER_WORDS, k=rng.randint(4, 8)), word, cue, cue]
            rng.shuffle(words)
            rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return Examples([text for text, _ in rows], [label for _, label in rows])


SOURCE_TRAIN, SOURCE_VAL = domain(48, 1, target=False), domain(12, 2, target=False)
TARGET_UNLABELED = domain(48, 3, target=True).texts
TARGET_TEST = domain(50, 4, target=True)  # labeled copy: evaluation only


class _Recorder(NullCallbacks):
    def __init__(self, cancel_at: int | None = None) -> None:
        self.cancel_at = cancel_at
        self.steps: list[int] = []
        self.epochs: list[dict[str, float]] = []
        self.total_steps = 0

    def on_train_begin(self, *, total_steps: int, epochs: int) -> None:
        self.total_steps = total_steps

    def on_step_end(self, *, epoch: int, step: int, total_steps: int, loss: float) -> None:
        self.steps.append(step)
        if step == self.cancel_at:
            raise TrainingCancelled("cancel requested")

    def on_epoch_end(self, **kwargs: Any) -> None:
        self.epochs.append(kwargs["metrics"])


def _train(base: Path, strategy: Any, callbacks: Any = None, **overrides: Any) -> TrainedModel:
    return train_model(
        base_model_dir=base,
        task="text-classification",
        label_names=LABELS,
        train=SOURCE_TRAIN,
        validation=SOURCE_VAL,
        strategy=strategy,
        hp=Hyperparameters(**{**HP, **overrides}),
        callbacks=callbacks or NullCallbacks(),
        aux_texts={"target_dataset_id": TARGET_UNLABELED},
    )


def _accuracy(model_dir: Path, examples: Examples) -> float:
    predictions = load_predictor(model_dir).predict(examples.texts)
    pairs = zip(predictions, examples.labels, strict=True)
    hits = [prediction["label"] == LABELS[label] for prediction, label in pairs]
    return sum(hits) / len(hits)


@pytest.fixture(scope="module")
def runs(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("dann")
    recorder = _Recorder()
    trained = {
        "source_only": _train(tiny_bert_dir, FullStrategy()),
        "dann": _train(tiny_bert_dir, DannStrategy(target_dataset_id="t"), recorder),
        # the same model and loop with (almost) no reversed gradient: the adversary is the cause
        "dann_no_reversal": _train(
            tiny_bert_dir, DannStrategy(target_dataset_id="t", domain_loss_weight=1e-3)
        ),
    }
    dirs = {
        name: write_artifact(model, out / name, manifest={"base_model": {"id": "tiny-bert"}})
        for name, model in trained.items()
    }
    return {"trained": trained, "dirs": dirs, "recorder": recorder}


def test_dann_beats_source_only_on_the_target_domain(runs: dict[str, Any]) -> None:
    source = {name: _accuracy(path, SOURCE_VAL) for name, path in runs["dirs"].items()}
    target = {name: _accuracy(path, TARGET_TEST) for name, path in runs["dirs"].items()}
    print(f"\nsource validation accuracy: {source}\ntarget test accuracy: {target}")
    assert min(source.values()) >= 0.9  # everyone learned the source domain
    assert target["source_only"] <= 0.7  # the shift is real: source-only degrades
    assert target["dann_no_reversal"] <= 0.7
    assert target["dann"] >= target["source_only"]
    assert target["dann"] >= target["source_only"] + 0.2
    assert target["dann"] >= target["dann_no_reversal"] + 0.2


def test_metrics_domain_accuracy_and_lambda(runs: dict[str, Any]) -> None:
    recorder = runs["recorder"]
    history = runs["trained"]["dann"].history
    assert recorder.steps == list(range(1, recorder.total_steps + 1))
    assert recorder.epochs == history and len(history) == HP["epochs"]
    for metrics in history:
        assert {"val_accuracy", "val_loss", "train_loss", "domain_accuracy", "lambda"} <= set(
            metrics
        )
    lambdas = [metrics["lambda"] for metrics in history]
    assert lambdas == sorted(lambdas) and 0.0 < lambdas[0] < lambdas[-1] <= 1.0
    # with the reversal the domains end up hard to tell apart; without it they stay easy
    assert history[-1]["domain_accuracy"] <= 0.6
    assert runs["trained"]["dann_no_reversal"].metrics["domain_accuracy"] >= 0.7


def test_artifact_holds_the_trained_encoder(runs: dict[str, Any], tiny_bert_dir: Path) -> None:
    path = runs["dirs"]["dann"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "head" and manifest["backbone"] == "encoder"
    assert manifest["head"]["pooling"] == "cls"
    encoder = load_file(str(path / "encoder" / "model.safetensors"))
    base = load_file(str(tiny_bert_dir / "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(encoder[key], base[key])  # the encoder trained
    assert not any("domain" in name for name in encoder)  # the adversary is not shipped
    assert [p["label"] for p in load_predictor(path).predict(["alpha kalo", "beta lolo"])] == [
        "A",
        "B",
    ]


def test_needs_target_texts_and_propagates_cancel(tiny_bert_dir: Path) -> None:
    strategy = DannStrategy(target_dataset_id="t")
    with pytest.raises(ValueError, match="target"):
        train_model(
            base_model_dir=tiny_bert_dir,
            task="text-classification",
            label_names=LABELS,
            train=SOURCE_TRAIN,
            validation=SOURCE_VAL,
            strategy=strategy,
            hp=Hyperparameters(**HP),
            callbacks=NullCallbacks(),
        )
    recorder = _Recorder(cancel_at=2)
    with pytest.raises(TrainingCancelled):
        _train(tiny_bert_dir, strategy, recorder)
    assert recorder.steps == [1, 2] and recorder.epochs == []
