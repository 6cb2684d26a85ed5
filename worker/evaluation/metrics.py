"""Classification metrics of one evaluation split, computed with scikit-learn.

Single-label: ``predictions = argmax(probs)``. ``accuracy`` and the micro / macro / weighted
F1 scores are scikit-learn's ``accuracy_score`` / ``f1_score``; the averages run over the labels
that occur in ``y_true`` or in the predictions (scikit-learn's default, the same as the
training loop's ``val_macro_f1``), while ``per_class`` lists every label, absent ones with zeros
(``labels=range(k)``, ``zero_division=0``). ``confusion_matrix`` has one row per true label and
one column per predicted label.

Multilabel: label ``j`` is predicted when ``probs[:, j] >= thresholds[j]`` (0.5 by default).
``subset_accuracy`` counts examples whose whole label set is right; F1 averages run over every
label column (``zero_division=0``); ``label_confusion`` is ``multilabel_confusion_matrix``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)

from worker.evaluation._checks import as_probabilities, as_targets, as_thresholds


def classification_metrics(
    probs: np.ndarray,
    y_true: np.ndarray,
    *,
    label_names: list[str],
    multilabel: bool,
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """Scores of ``probs`` (``(n, k)`` probabilities) against ``y_true``.

    ``y_true`` is ``(n,)`` class indices (single-label) or an ``(n, k)`` 0/1 matrix
    (multilabel). ``thresholds`` (multilabel only) holds one decision threshold per label.
    Raises ``ValueError`` on empty or malformed input.
    """
    scores = as_probabilities(probs)
    n, k = scores.shape
    if len(label_names) != k:
        raise ValueError(f"{len(label_names)} label names for {k} probability columns")
    targets = as_targets(y_true, n=n, k=k, multilabel=multilabel)
    if multilabel:
        cut = as_thresholds(thresholds, k=k)
        predicted = (scores >= cut).astype(np.int64)
        return _multilabel(targets, predicted, label_names, cut)
    if thresholds is not None:
        raise ValueError("thresholds apply to multilabel tasks only")
    return _single_label(targets, scores.argmax(axis=1), label_names)


def _single_label(
    y_true: NDArray[np.int64], y_pred: NDArray[np.int64], label_names: list[str]
) -> dict[str, Any]:
    labels = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": _f1(y_true, y_pred, "macro"),
        "micro_f1": _f1(y_true, y_pred, "micro"),
        "weighted_f1": _f1(y_true, y_pred, "weighted"),
        "per_class": _per_class(label_names, precision, recall, f1, support),
        "confusion_matrix": {
            "labels": list(label_names),
            "matrix": [[int(count) for count in row] for row in matrix],
        },
    }


def _multilabel(
    y_true: NDArray[np.int64],
    y_pred: NDArray[np.int64],
    label_names: list[str],
    thresholds: NDArray[np.float64],
) -> dict[str, Any]:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, zero_division=0
    )
    per_class = _per_class(label_names, precision, recall, f1, support)
    for row, threshold in zip(per_class, thresholds, strict=True):
        row["threshold"] = float(threshold)
    confusion = multilabel_confusion_matrix(y_true, y_pred)
    return {
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": _f1(y_true, y_pred, "micro"),
        "macro_f1": _f1(y_true, y_pred, "macro"),
        "per_class": per_class,
        "label_confusion": [
            {
                "label": name,
                "tn": int(cell[0, 0]),
                "fp": int(cell[0, 1]),
                "fn": int(cell[1, 0]),
                "tp": int(cell[1, 1]),
            }
            for name, cell in zip(label_names, confusion, strict=True)
        ],
    }


def _f1(y_true: NDArray[np.int64], y_pred: NDArray[np.int64], average: str) -> float:
    return float(f1_score(y_true, y_pred, average=average, zero_division=0))


def _per_class(
    label_names: list[str],
    precision: NDArray[np.float64],
    recall: NDArray[np.float64],
    f1: NDArray[np.float64],
    support: NDArray[np.int64],
) -> list[dict[str, Any]]:
    return [
        {
            "label": name,
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for name, p, r, f, s in zip(label_names, precision, recall, f1, support, strict=True)
    ]
