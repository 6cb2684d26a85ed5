"""One evaluation split's report: loss, metrics and calibration of a model's logits.

The metrics are those of the probabilities and decisions serving would give (``calibration``
applied); the loss and ``ece_raw`` are those of the raw logits, so a report shows both what
the network learnt and what calibration changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worker.evaluation._checks import as_scores, as_targets
from worker.evaluation._numeric import binary_cross_entropy, cross_entropy
from worker.evaluation.calibration import Calibration, expected_calibration_error
from worker.evaluation.metrics import classification_metrics


def evaluate_split(
    logits: np.ndarray,
    y_true: np.ndarray,
    *,
    label_names: list[str],
    multilabel: bool,
    calibration: Calibration,
) -> dict[str, Any]:
    """Everything a report says about one split (validation or test).

    ``{"examples", "loss", <classification_metrics keys>, "calibration": {"ece_raw",
    "bins_raw", "temperature", "ece", "bins"}}`` plus, for multilabel, ``"at_default_threshold"``
    (the metrics at 0.5 for every label, to compare with the tuned thresholds).
    ``loss`` is the mean cross-entropy (BCE for multilabel) of the raw logits, as in training.
    """
    raw = as_scores(logits, name="logits")
    n, k = raw.shape
    targets = as_targets(y_true, n=n, k=k, multilabel=multilabel)
    if not multilabel and calibration.thresholds is not None:
        raise ValueError("decision thresholds apply to multilabel tasks only")
    loss = binary_cross_entropy(raw, targets) if multilabel else cross_entropy(raw, targets)
    raw_probs = Calibration().probabilities(raw, multilabel=multilabel)
    served = calibration.probabilities(raw, multilabel=multilabel)
    metrics = classification_metrics(
        served,
        targets,
        label_names=label_names,
        multilabel=multilabel,
        thresholds=calibration.decision_thresholds(k) if multilabel else None,
    )
    before = expected_calibration_error(raw_probs, targets, multilabel=multilabel)
    after = expected_calibration_error(served, targets, multilabel=multilabel)
    report: dict[str, Any] = {
        "examples": n,
        "loss": loss,
        **metrics,
        "calibration": {
            "ece_raw": before["ece"],
            "bins_raw": before["bins"],
            "temperature": calibration.temperature,
            "ece": after["ece"],
            "bins": after["bins"],
        },
    }
    if multilabel:
        report["at_default_threshold"] = classification_metrics(
            served, targets, label_names=label_names, multilabel=True
        )
    return report
