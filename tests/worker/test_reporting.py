"""The evaluation after training describes what is served, and serving applies its calibration.

The runner evaluates the in-memory model through the predictor's forward, fits the calibration
on validation, writes it into the manifest, and the predictor that loads the artifact applies
it; these tests close that loop on tiny models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import FullStrategy, LinearProbeStrategy
from worker.artifacts import write_artifact
from worker.core.data import Examples
from worker.evaluation.calibration import Calibration
from worker.reporting import build_report, final_evaluation, write_report
from worker.serving.predictor import load_predictor
from worker.testing import FILLER_WORDS
from worker.training.recipe import TrainedModel

CPU = torch.device("cpu")
MANIFEST = {"base_model": {"id": "tiny-bert"}}


def _multilabel_split(seed: int = 0) -> tuple[Examples, Examples, list[str]]:
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[list[int]] = []
    for _ in range(160):
        words = [FILLER_WORDS[int(i)] for i in rng.integers(0, 100, size=4)]
        has = [bool(rng.random() < 0.5), bool(rng.random() < 0.3)]
        if has[0]:
            words += ["alpha"]
        if has[1]:
            words += ["beta"]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append([i for i, flag in enumerate(has) if flag])
    return (
        Examples(texts[:120], labels[:120]),
        Examples(texts[120:], labels[120:]),
        ["has_alpha", "has_beta"],
    )


def test_served_multilabel_decisions_use_the_tuned_thresholds(
    tiny_st_bert_dir: Path, tiny_trainer: Callable[..., TrainedModel], tmp_path: Path
) -> None:
    split = _multilabel_split()
    # few epochs at a small rate: scores sit away from 0/1, so tuned thresholds matter
    trained = tiny_trainer(
        tiny_st_bert_dir,
        LinearProbeStrategy(),
        split=split,
        task="text-multilabel",
        epochs=4,
        learning_rate=3e-3,
        early_stopping={"metric": "val_micro_f1"},
    )
    hp = Hyperparameters(tune_thresholds=True)
    evaluation = final_evaluation(trained, validation=split[1], test=None, hp=hp, device=CPU)
    thresholds = evaluation.calibration.thresholds
    assert thresholds is not None and len(thresholds) == 2
    validation = evaluation.validation
    assert validation is not None
    # tuned on this very set: never worse than 0.5 on it
    assert validation["macro_f1"] >= validation["at_default_threshold"]["macro_f1"] - 1e-9

    artifact = write_artifact(
        trained,
        tmp_path / "m",
        manifest={**MANIFEST, "calibration": evaluation.calibration.to_json()},
    )
    predictor = load_predictor(artifact)
    assert predictor.calibration.thresholds == pytest.approx(thresholds)
    served = predictor.predict(split[1].texts)
    names = split[2]
    truth = [sorted(names[i] for i in label) for label in split[1].labels]  # type: ignore[union-attr]
    exact = sum(sorted(p["labels"]) == t for p, t in zip(served, truth, strict=True))
    assert exact / len(truth) == pytest.approx(validation["subset_accuracy"])
    # the decisions are the thresholds applied to the served scores
    for prediction in served:
        scores = {entry["label"]: entry["score"] for entry in prediction["top_k"]}
        for label in prediction["labels"]:
            assert scores.get(label, 1.0) >= thresholds[names.index(label)] - 1e-6


def test_temperature_is_fitted_on_validation_and_applied_when_serving(
    tiny_bert_dir: Path, tiny_trainer: Callable[..., TrainedModel], tmp_path: Path
) -> None:
    trained = tiny_trainer(tiny_bert_dir, FullStrategy(), epochs=3)
    from tests.worker.conftest import make_split

    _, validation, _ = make_split()
    test = make_split(n_per_class=10, seed=7)[1]
    hp = Hyperparameters(temperature_scaling=True)
    evaluation = final_evaluation(trained, validation=validation, test=test, hp=hp, device=CPU)
    temperature = evaluation.calibration.temperature
    assert temperature is not None and temperature > 0
    report = evaluation.validation
    assert report is not None and evaluation.test is not None
    assert report["calibration"]["ece"] <= report["calibration"]["ece_raw"] + 1e-6
    # the served model on validation is the selected evaluation
    assert report["accuracy"] == pytest.approx(trained.metrics["val_accuracy"])
    assert report["loss"] == pytest.approx(trained.metrics["val_loss"], abs=1e-4)

    artifact = write_artifact(
        trained,
        tmp_path / "m",
        manifest={**MANIFEST, "calibration": evaluation.calibration.to_json()},
    )
    predictor = load_predictor(artifact)
    logits = predictor.logits(test.texts)
    expected = torch.softmax(logits / temperature, dim=-1).max(dim=-1).values
    served = [p["score"] for p in predictor.predict(test.texts)]
    assert served == pytest.approx(expected.tolist(), abs=1e-5)
    uncalibrated = torch.softmax(logits, dim=-1).max(dim=-1).values
    if abs(temperature - 1.0) > 0.05:
        assert served != pytest.approx(uncalibrated.tolist(), abs=1e-5)

    report_dir = write_report(
        build_report(
            job_id="job_x",
            model_id="mdl_x",
            trained=trained,
            evaluation=evaluation,
            cost={"artifact_bytes": 1},
        ),
        tmp_path / "reports" / "job_x",
    )
    names = sorted(p.name for p in (report_dir / "plots").iterdir())
    assert names == ["calibration.png", "confusion_matrix.png", "curves.png"]
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]


def test_an_artifact_without_calibration_serves_plain_scores(
    trained_probe: TrainedModel, tmp_path: Path
) -> None:
    predictor = load_predictor(write_artifact(trained_probe, tmp_path / "m", manifest=MANIFEST))
    assert predictor.calibration == Calibration()
    logits = predictor.logits(["alpha kalo"])
    served: Any = predictor.predict(["alpha kalo"])[0]["score"]
    assert served == pytest.approx(float(torch.softmax(logits, -1).max()), abs=1e-6)
