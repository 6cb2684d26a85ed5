"""The evaluation library: metrics against scikit-learn and hand-computed numbers, threshold
tuning, ECE, temperature scaling, the calibration record, split reports and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)
from torch.nn import functional as F

from worker.evaluation import (
    Calibration,
    classification_metrics,
    evaluate_split,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    tune_thresholds,
)
from worker.evaluation.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE
from worker.evaluation.plots import PLOT_NAMES, render_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _one_hot_probs(predicted: list[int], k: int) -> np.ndarray:
    """Probabilities whose argmax is ``predicted``: 0.7 on it, the rest shared equally."""
    probs = np.full((len(predicted), k), 0.3 / (k - 1))
    probs[np.arange(len(predicted)), predicted] = 0.7
    return probs


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _sample_classes(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cumulative = probs.cumsum(axis=1)
    draws = rng.random((len(probs), 1))
    return np.minimum((draws > cumulative).sum(axis=1), probs.shape[1] - 1)


def _assert_plain_json(value: Any) -> None:
    """Only dict/list/str/int/float/bool/None, no numpy scalar, no NaN or infinity."""
    json.dumps(value, allow_nan=False)
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            _assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)
        if type(value) is float:
            assert math.isfinite(value)


# ---------------------------------------------------------------------------- metrics


def test_single_label_hand_computed_case_including_an_absent_label() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    predicted = [0, 1, 1, 1, 2, 0]
    names = ["a", "b", "c", "unused"]
    result = classification_metrics(
        _one_hot_probs(predicted, 4), y_true, label_names=names, multilabel=False
    )
    # a: P 1/2 R 1/2 F1 1/2; b: P 2/3 R 1 F1 4/5; c: P 1 R 1/2 F1 2/3; "unused" never occurs
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["micro_f1"] == pytest.approx(4 / 6)
    assert result["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert result["weighted_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    expected = [
        ("a", 1 / 2, 1 / 2, 1 / 2, 2),
        ("b", 2 / 3, 1.0, 4 / 5, 2),
        ("c", 1.0, 1 / 2, 2 / 3, 2),
        ("unused", 0.0, 0.0, 0.0, 0),
    ]
    for row, (label, p, r, f, s) in zip(result["per_class"], expected, strict=True):
        assert row == {
            "label": label,
            "precision": pytest.approx(p),
            "recall": pytest.approx(r),
            "f1": pytest.approx(f),
            "support": s,
        }
    assert result["confusion_matrix"] == {
        "labels": names,
        "matrix": [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]],
    }
    _assert_plain_json(result)


def test_single_label_agrees_with_scikit_learn_on_random_predictions() -> None:
    rng = np.random.default_rng(0)
    n, k = 300, 6
    probs = _softmax(rng.normal(size=(n, k)))
    y_true = rng.integers(0, k - 1, size=n)  # the last label never occurs in y_true
    names = [f"label {i}" for i in range(k)]
    result = classification_metrics(probs, y_true, label_names=names, multilabel=False)
    y_pred = probs.argmax(axis=1)
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    for average in ("macro", "micro", "weighted"):
        assert result[f"{average}_f1"] == pytest.approx(
            f1_score(y_true, y_pred, average=average, zero_division=0)
        )
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(k)), zero_division=0
    )
    assert [row["precision"] for row in result["per_class"]] == pytest.approx(p)
    assert [row["recall"] for row in result["per_class"]] == pytest.approx(r)
    assert [row["f1"] for row in result["per_class"]] == pytest.approx(f)
    assert [row["support"] for row in result["per_class"]] == s.tolist()
    assert (
        result["confusion_matrix"]["matrix"]
        == confusion_matrix(y_true, y_pred, labels=list(range(k))).tolist()
    )
    _assert_plain_json(result)


def test_multilabel_hand_computed_case() -> None:
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3], [0.7, 0.45, 0.2], [0.3, 0.1, 0.6]])
    # predicted at 0.5: [1,0,0], [0,1,0], [1,0,0], [0,0,1]
    result = classification_metrics(probs, y_true, label_names=["x", "y", "z"], multilabel=True)
    assert result["subset_accuracy"] == pytest.approx(1 / 4)
    assert result["micro_f1"] == pytest.approx(6 / 9)  # tp 3, fp 1, fn 2
    assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert [row["f1"] for row in result["per_class"]] == pytest.approx([1, 2 / 3, 0])
    assert [row["threshold"] for row in result["per_class"]] == [0.5, 0.5, 0.5]
    assert [row["support"] for row in result["per_class"]] == [2, 2, 1]
    assert result["label_confusion"] == [
        {"label": "x", "tn": 2, "fp": 0, "fn": 0, "tp": 2},
        {"label": "y", "tn": 2, "fp": 0, "fn": 1, "tp": 1},
        {"label": "z", "tn": 2, "fp": 1, "fn": 1, "tp": 0},
    ]
    # a lower threshold for "y" recovers its missed positive (0.45)
    lowered = classification_metrics(
        probs,
        y_true,
        label_names=["x", "y", "z"],
        multilabel=True,
        thresholds=np.array([0.5, 0.4, 0.5]),
    )
    assert lowered["per_class"][1]["f1"] == pytest.approx(1.0)
    assert lowered["per_class"][1]["threshold"] == 0.4
    _assert_plain_json(result)


def test_multilabel_agrees_with_scikit_learn_at_given_thresholds() -> None:
    rng = np.random.default_rng(1)
    n, k = 200, 5
    probs = rng.random((n, k))
    y_true = (rng.random((n, k)) < 0.3).astype(int)
    thresholds = np.array([0.2, 0.35, 0.5, 0.65, 0.8])
    result = classification_metrics(
        probs, y_true, label_names=list("abcde"), multilabel=True, thresholds=thresholds
    )
    y_pred = (probs >= thresholds).astype(int)
    assert result["subset_accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    for average in ("micro", "macro"):
        assert result[f"{average}_f1"] == pytest.approx(
            f1_score(y_true, y_pred, average=average, zero_division=0)
        )
    cells = multilabel_confusion_matrix(y_true, y_pred)
    assert [[row["tn"], row["fp"], row["fn"], row["tp"]] for row in result["label_confusion"]] == [
        cell.ravel().tolist() for cell in cells
    ]


@pytest.mark.parametrize(
    ("probs", "y_true", "names", "multilabel", "thresholds"),
    [
        (np.zeros((0, 3)), np.zeros(0, dtype=int), ["a", "b", "c"], False, None),
        (np.zeros((0, 3)), np.zeros((0, 3), dtype=int), ["a", "b", "c"], True, None),
        (np.full((2, 3), 1 / 3), np.array([0, 1]), ["a", "b"], False, None),
        (np.array([[2.0, -1.0]]), np.array([0]), ["a", "b"], False, None),
        (np.array([[0.5, np.nan]]), np.array([0]), ["a", "b"], False, None),
        (np.full((2, 2), 0.5), np.array([0, 2]), ["a", "b"], False, None),
        (np.full((2, 2), 0.5), np.array([0.0, 1.0]), ["a", "b"], False, None),
        (np.full((2, 2), 0.5), np.array([[0, 2], [1, 0]]), ["a", "b"], True, None),
        (np.full((2, 2), 0.5), np.array([0, 1]), ["a", "b"], False, np.array([0.5, 0.5])),
        (np.full((2, 2), 0.5), np.array([[0, 1], [1, 0]]), ["a", "b"], True, np.array([0.5])),
    ],
)
def test_malformed_metric_inputs_raise(
    probs: np.ndarray,
    y_true: np.ndarray,
    names: list[str],
    multilabel: bool,
    thresholds: np.ndarray | None,
) -> None:
    with pytest.raises(ValueError):
        classification_metrics(
            probs, y_true, label_names=names, multilabel=multilabel, thresholds=thresholds
        )


# ------------------------------------------------------------------------- thresholds


def test_tuned_thresholds_beat_the_default_on_a_low_scoring_label() -> None:
    rng = np.random.default_rng(2)
    n = 200
    y_true = np.zeros((n, 3), dtype=int)
    y_true[: n // 4, 0] = 1  # label 0: positives score ~0.3, negatives ~0.1
    y_true[n // 2 :, 1] = 1  # label 1: cleanly separated around 0.5; label 2: no positives
    probs = np.empty((n, 3))
    probs[:, 0] = np.where(
        y_true[:, 0] == 1, rng.uniform(0.251, 0.35, n), rng.uniform(0.05, 0.15, n)
    )
    probs[:, 1] = np.where(y_true[:, 1] == 1, rng.uniform(0.7, 0.9, n), rng.uniform(0.1, 0.3, n))
    probs[:, 2] = rng.uniform(0.0, 0.4, n)

    tuned = tune_thresholds(probs, y_true)

    assert isinstance(tuned, np.ndarray) and tuned.shape == (3,)
    # every threshold in (0.15, 0.25] separates label 0; the one closest to 0.5 wins the tie
    assert tuned[0] == pytest.approx(0.25)
    assert tuned[1] == 0.5  # 0.5 is among the perfect thresholds, so it is kept
    assert tuned[2] == 0.5  # no positives: untouched
    names = ["low", "clean", "never"]
    at_default = classification_metrics(probs, y_true, label_names=names, multilabel=True)
    at_tuned = classification_metrics(
        probs, y_true, label_names=names, multilabel=True, thresholds=tuned
    )
    assert at_default["per_class"][0]["f1"] == 0.0
    assert at_tuned["per_class"][0]["f1"] == 1.0
    assert at_tuned["macro_f1"] > at_default["macro_f1"]


def test_tuned_threshold_maximises_f1_over_the_grid() -> None:
    rng = np.random.default_rng(3)
    probs = rng.random((150, 1))
    y_true = (rng.random((150, 1)) < probs).astype(int)  # noisy: no perfect threshold
    (tuned,) = tune_thresholds(probs, y_true)
    grid = np.arange(1, 100) / 100
    scores = [f1_score(y_true[:, 0], probs[:, 0] >= t, zero_division=0) for t in grid]
    assert f1_score(y_true[:, 0], probs[:, 0] >= tuned) == pytest.approx(max(scores))


# ------------------------------------------------------------------------ calibration


def test_ece_is_near_zero_for_calibrated_and_large_for_overconfident_probabilities() -> None:
    rng = np.random.default_rng(4)
    n, k = 20_000, 4
    z = rng.normal(scale=1.5, size=(n, k))
    y_true = _sample_classes(_softmax(z), rng)
    calibrated = expected_calibration_error(_softmax(z), y_true, multilabel=False)
    overconfident = expected_calibration_error(_softmax(4 * z), y_true, multilabel=False)
    assert calibrated["ece"] < 0.02
    assert overconfident["ece"] > 0.15

    probs = rng.random((5_000, 3))
    labels = (rng.random((5_000, 3)) < probs).astype(int)
    assert expected_calibration_error(probs, labels, multilabel=True)["ece"] < 0.02
    sharpened = np.clip(np.round(probs), 0.0, 1.0)  # says 0 or 1, is right ~75% of the time
    assert expected_calibration_error(sharpened, labels, multilabel=True)["ece"] > 0.2


def test_ece_bins_are_equal_width_and_empty_bins_hold_none() -> None:
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
    y_true = np.array([0, 1, 1, 0])
    result = expected_calibration_error(probs, y_true, multilabel=False, n_bins=5)
    bins = result["bins"]
    assert [b["lower"] for b in bins] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [b["upper"] for b in bins] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert [b["count"] for b in bins] == [0, 0, 2, 0, 2]
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None
    assert bins[2]["confidence"] == pytest.approx(0.55) and bins[2]["accuracy"] == 1.0
    assert bins[4]["confidence"] == pytest.approx(0.925) and bins[4]["accuracy"] == 0.5
    assert result["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.425)
    _assert_plain_json(result)
    with pytest.raises(ValueError):
        expected_calibration_error(probs[:0], y_true[:0], multilabel=False)


@pytest.mark.parametrize("multilabel", [False, True])
def test_fit_temperature_recovers_the_scale_of_overconfident_logits(multilabel: bool) -> None:
    rng = np.random.default_rng(5)
    n, k = 6_000, 5
    z = rng.normal(scale=1.5, size=(n, k))
    if multilabel:
        y_true = (rng.random((n, k)) < _sigmoid(z)).astype(int)
    else:
        y_true = _sample_classes(_softmax(z), rng)
    temperature = fit_temperature(2 * z, y_true, multilabel=multilabel)
    assert temperature == pytest.approx(2.0, rel=0.1)
    assert type(temperature) is float


def test_fit_temperature_sharpens_separable_data_and_is_clamped() -> None:
    logits = np.array([[3.0, -3.0], [-2.0, 2.0], [4.0, 0.0]] * 10)
    y_true = np.array([0, 1, 0] * 10)
    # the loss keeps falling as T -> 0; L-BFGS stops once it is flat, well below 1
    assert MIN_TEMPERATURE <= fit_temperature(logits, y_true, multilabel=False) < 0.5
    # logits that point the wrong way: the best T > 0 is infinite, clamped
    assert fit_temperature(logits, 1 - y_true, multilabel=False) == MAX_TEMPERATURE
    assert fit_temperature(logits, np.eye(2, dtype=int)[1 - y_true], multilabel=True) == (
        MAX_TEMPERATURE
    )


def test_calibration_probabilities_are_stable_and_scaled() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [2.0, 1.0, 0.0]])
    probs = Calibration().probabilities(logits, multilabel=False)
    assert np.isfinite(probs).all() and probs.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert probs[0, 0] == 1.0
    scaled = Calibration(temperature=2.0).probabilities(logits, multilabel=False)
    assert scaled[1] == pytest.approx(_softmax(logits[1:] / 2)[0])
    sig = Calibration(temperature=0.5).probabilities(logits, multilabel=True)
    assert np.isfinite(sig).all()
    assert sig[0].tolist() == [1.0, 0.5, 0.0]
    assert sig[1] == pytest.approx(_sigmoid(logits[1] / 0.5))


def test_calibration_json_round_trip_and_defaults() -> None:
    calibration = Calibration(temperature=1.7, thresholds=[0.3, 0.5, 0.72])
    data = json.loads(json.dumps(calibration.to_json()))
    assert Calibration.from_json(data) == calibration
    assert Calibration.from_json(None) == Calibration()
    assert Calibration.from_json({}) == Calibration()
    assert Calibration.from_json({"temperature": 2}).temperature == 2.0
    assert Calibration().decision_thresholds(3).tolist() == [0.5, 0.5, 0.5]
    assert calibration.decision_thresholds(3).tolist() == [0.3, 0.5, 0.72]
    with pytest.raises(ValueError):
        calibration.decision_thresholds(4)


@pytest.mark.parametrize(
    "data",
    [
        {"temperature": 0},
        {"temperature": -1.0},
        {"temperature": float("nan")},
        {"temperature": "2"},
        {"temperature": True},
        {"thresholds": []},
        {"thresholds": [0.5, 1.5]},
        {"thresholds": [0.5, None]},
        {"thresholds": "0.5"},
        ["not", "an", "object"],
    ],
)
def test_calibration_from_json_rejects_bad_input(data: Any) -> None:
    with pytest.raises(ValueError):
        Calibration.from_json(data)


def test_fit_calibration_tunes_thresholds_on_temperature_scaled_probabilities() -> None:
    rng = np.random.default_rng(6)
    n, k = 2_000, 4
    z = rng.normal(scale=1.5, size=(n, k)) - 1.0
    y_true = (rng.random((n, k)) < _sigmoid(z)).astype(int)
    logits = 3 * z
    calibration = fit_calibration(
        logits, y_true, multilabel=True, temperature_scaling=True, tune_thresholds=True
    )
    assert calibration.temperature == pytest.approx(3.0, rel=0.15)
    scaled = _sigmoid(logits / calibration.temperature)
    assert calibration.thresholds == tune_thresholds(scaled, y_true).tolist()

    plain = fit_calibration(
        logits, y_true, multilabel=True, temperature_scaling=False, tune_thresholds=False
    )
    assert plain == Calibration()
    single = fit_calibration(
        z, y_true.argmax(axis=1), multilabel=False, temperature_scaling=False, tune_thresholds=True
    )
    assert single.thresholds is None  # thresholds are a multilabel thing


# ----------------------------------------------------------------------- split reports


def _single_label_split(
    rng: np.random.Generator, n: int = 400, k: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(scale=1.5, size=(n, k))
    return 3 * z, _sample_classes(_softmax(z), rng)


def _multilabel_split(
    rng: np.random.Generator, n: int = 400, k: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(scale=1.5, size=(n, k)) - 1.0
    return 3 * z, (rng.random((n, k)) < _sigmoid(z)).astype(int)


def test_evaluate_split_single_label() -> None:
    logits, y_true = _single_label_split(np.random.default_rng(7))
    names = ["w", "x", "y", "z"]
    raw = evaluate_split(
        logits, y_true, label_names=names, multilabel=False, calibration=Calibration()
    )
    scaled = evaluate_split(
        logits, y_true, label_names=names, multilabel=False, calibration=Calibration(3.0)
    )
    torch_loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y_true)).item()
    assert raw["examples"] == 400
    assert raw["loss"] == pytest.approx(torch_loss) and scaled["loss"] == raw["loss"]
    assert scaled["accuracy"] == raw["accuracy"]  # temperature never moves the argmax
    assert raw["calibration"]["temperature"] is None
    assert raw["calibration"]["ece"] == raw["calibration"]["ece_raw"]
    assert scaled["calibration"]["ece_raw"] == raw["calibration"]["ece_raw"]
    assert scaled["calibration"]["ece"] < scaled["calibration"]["ece_raw"] / 2
    assert len(scaled["calibration"]["bins"]) == len(scaled["calibration"]["bins_raw"]) == 15
    assert "at_default_threshold" not in raw
    _assert_plain_json(scaled)
    with pytest.raises(ValueError):
        evaluate_split(
            logits,
            y_true,
            label_names=names,
            multilabel=False,
            calibration=Calibration(thresholds=[0.5] * 4),
        )


def test_evaluate_split_multilabel_reports_tuned_and_default_thresholds() -> None:
    rng = np.random.default_rng(8)
    logits, y_true = _multilabel_split(rng)
    calibration = fit_calibration(
        logits, y_true, multilabel=True, temperature_scaling=True, tune_thresholds=True
    )
    report = evaluate_split(
        logits, y_true, label_names=list("abcd"), multilabel=True, calibration=calibration
    )
    torch_loss = F.binary_cross_entropy_with_logits(
        torch.from_numpy(logits), torch.from_numpy(y_true.astype(float))
    ).item()
    assert report["loss"] == pytest.approx(torch_loss)
    assert [row["threshold"] for row in report["per_class"]] == calibration.thresholds
    default = report["at_default_threshold"]
    assert [row["threshold"] for row in default["per_class"]] == [0.5] * 4
    assert report["macro_f1"] >= default["macro_f1"]  # tuned on this very split
    assert report["calibration"]["temperature"] == calibration.temperature
    assert report["calibration"]["ece"] < report["calibration"]["ece_raw"]
    _assert_plain_json(report)


# ------------------------------------------------------------------------------ plots


def _report(*, multilabel: bool, k: int = 4, history: bool = True, test: bool = True) -> dict:
    rng = np.random.default_rng(9)
    split = _multilabel_split if multilabel else _single_label_split
    names = [f"category number {i} with a long name" for i in range(k)]
    val_logits, val_y = split(rng, 300, k)
    calibration = fit_calibration(
        val_logits, val_y, multilabel=multilabel, temperature_scaling=True, tune_thresholds=True
    )

    def evaluate(logits: np.ndarray, y_true: np.ndarray) -> dict[str, Any]:
        return evaluate_split(
            logits, y_true, label_names=names, multilabel=multilabel, calibration=calibration
        )

    report: dict[str, Any] = {
        "labels": names,
        "task": "text-multilabel" if multilabel else "text-classification",
        "validation": evaluate(val_logits, val_y),
        "test": evaluate(*split(rng, 200, k)) if test else None,
    }
    if history:
        report["selection"] = {"metric": "val_loss", "mode": "min", "selected_epoch": 2.0}
        report["history"] = [
            {
                "epoch": e,
                "step": 10 * e,
                "train_loss": 1.0 / e,
                "val_loss": 1.2 / e + 0.1 * e,
                "val_macro_f1": 0.5 + 0.1 * e,
                "val_accuracy": 0.6 + 0.05 * e,
            }
            for e in (1.0, 2.0, 3.0)
        ] + [{"epoch": 3.5, "step": 35, "train_loss": 0.2}]  # a train-only row
    return report


def _assert_pngs(out_dir: Path, names: list[str]) -> None:
    assert sorted(path.name for path in out_dir.iterdir()) == sorted(f"{n}.png" for n in names)
    for name in names:
        path = out_dir / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = imread(path)
        assert image.ndim == 3 and image.shape[2] in (3, 4)
        assert 200 <= image.shape[0] <= 4000 and 200 <= image.shape[1] <= 4000


@pytest.mark.parametrize("multilabel", [False, True])
def test_render_plots_writes_every_plot(tmp_path: Path, multilabel: bool) -> None:
    written = render_plots(_report(multilabel=multilabel), tmp_path / "plots")
    assert written == list(PLOT_NAMES)
    _assert_pngs(tmp_path / "plots", written)


def test_render_plots_skips_only_what_has_no_data(tmp_path: Path) -> None:
    report = _report(multilabel=False, history=False, test=False)
    assert render_plots(report, tmp_path) == ["confusion_matrix", "calibration"]
    _assert_pngs(tmp_path, ["confusion_matrix", "calibration"])
    assert render_plots({"labels": [], "validation": None, "test": None}, tmp_path / "e") == []


def test_render_plots_caps_the_confusion_matrix_at_fifty_labels(tmp_path: Path) -> None:
    written = render_plots(_report(multilabel=False, k=60, history=False), tmp_path)
    assert "confusion_matrix" in written
    _assert_pngs(tmp_path, written)
