"""Probability calibration: expected calibration error, temperature scaling, thresholds.

- ``expected_calibration_error``: equal-width confidence bins; the weighted mean gap between
  each bin's mean confidence and its accuracy (Naeini et al. 2015; Guo et al. 2017).
  Single-label: the top label's probability against whether the top label is right.
  Multilabel: every (example, label) probability against that label's 0/1 truth.
- ``fit_temperature``: temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
  Networks"): one scalar ``T > 0``, served probabilities are ``softmax(logits / T)`` (or
  ``sigmoid(logits / T)``). ``T`` minimises the negative log-likelihood on a held-out set;
  it never changes the single-label argmax.
- ``Calibration``: what serving applies to logits (temperature, multilabel thresholds), and
  its JSON form for the model manifest. ``fit_calibration`` builds one from validation logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.evaluation._checks import as_probabilities, as_scores, as_targets, as_thresholds
from worker.evaluation._numeric import sigmoid, softmax
from worker.evaluation.thresholds import tune_thresholds as _tune_thresholds

#: ``fit_temperature`` clamps its answer to this range
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
DEFAULT_BINS = 15


def expected_calibration_error(
    probs: np.ndarray, y_true: np.ndarray, *, multilabel: bool, n_bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """``{"ece": float, "bins": [{"lower", "upper", "count", "confidence", "accuracy"}]}``.

    Bin ``i`` holds confidences in ``(lower, upper]`` (the first bin also holds 0). An empty
    bin has ``confidence`` and ``accuracy`` ``None`` and adds nothing to ``ece``.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    scores = as_probabilities(probs)
    n, k = scores.shape
    targets = as_targets(y_true, n=n, k=k, multilabel=multilabel)
    if multilabel:
        confidence = scores.ravel()
        correct = targets.ravel().astype(np.float64)
    else:
        confidence = scores.max(axis=1)
        correct = (scores.argmax(axis=1) == targets).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(index, minlength=n_bins)
    confidence_sums = np.bincount(index, weights=confidence, minlength=n_bins)
    correct_sums = np.bincount(index, weights=correct, minlength=n_bins)
    bins: list[dict[str, Any]] = []
    ece = 0.0
    for i in range(n_bins):
        count = int(counts[i])
        mean_confidence = mean_accuracy = None
        if count:
            mean_confidence = float(confidence_sums[i] / count)
            mean_accuracy = float(correct_sums[i] / count)
            ece += count / len(confidence) * abs(mean_accuracy - mean_confidence)
        bins.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": count,
                "confidence": mean_confidence,
                "accuracy": mean_accuracy,
            }
        )
    return {"ece": float(ece), "bins": bins}


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, *, multilabel: bool) -> float:
    """The temperature minimising NLL (or BCE) of ``logits / T`` on ``y_true``.

    Optimises ``log T`` with L-BFGS (strong Wolfe line search) in float64, ``T`` kept within
    ``[MIN_TEMPERATURE, MAX_TEMPERATURE]``. Separable data pushes ``T`` to the lower bound.
    """
    import torch
    from torch.nn import functional as F

    scores = as_scores(logits, name="logits")
    n, k = scores.shape
    targets = as_targets(y_true, n=n, k=k, multilabel=multilabel)
    z = torch.from_numpy(scores)
    if multilabel:
        target = torch.from_numpy(targets.astype(np.float64))
    else:
        target = torch.from_numpy(targets)
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        scaled = z / log_t.clamp(low, high).exp()
        if multilabel:
            loss = F.binary_cross_entropy_with_logits(scaled, target)
        else:
            loss = F.cross_entropy(scaled, target)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    fitted = float(log_t.detach())
    if not math.isfinite(fitted):
        return 1.0
    if fitted <= low:
        return MIN_TEMPERATURE
    if fitted >= high:
        return MAX_TEMPERATURE
    return math.exp(fitted)


@dataclass
class Calibration:
    """How served probabilities and decisions are made from a model's logits.

    ``temperature``: divide logits by it before softmax / sigmoid (``None``: no scaling).
    ``thresholds``: multilabel per-label decision thresholds (``None``: 0.5 for every label).
    """

    temperature: float | None = None
    thresholds: list[float] | None = None

    def __post_init__(self) -> None:
        if self.temperature is not None:
            if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float):
                raise ValueError("temperature must be a number")
            if not math.isfinite(self.temperature) or self.temperature <= 0:
                raise ValueError("temperature must be a finite number > 0")
            self.temperature = float(self.temperature)
        if self.thresholds is not None:
            if not isinstance(self.thresholds, list | tuple) or not self.thresholds:
                raise ValueError("thresholds must be a non-empty list of numbers")
            if any(isinstance(t, bool) or not isinstance(t, int | float) for t in self.thresholds):
                raise ValueError("thresholds must be numbers")
            cut = as_thresholds(np.asarray(self.thresholds), k=len(self.thresholds))
            self.thresholds = [float(t) for t in cut]

    def probabilities(self, logits: np.ndarray, *, multilabel: bool) -> np.ndarray:
        """``softmax`` (or ``sigmoid``) of ``logits / temperature``, float64, shape kept."""
        scores = as_scores(logits, name="logits")
        if self.temperature is not None:
            scores = scores / self.temperature
        return sigmoid(scores) if multilabel else softmax(scores)

    def decision_thresholds(self, k: int) -> np.ndarray:
        """The ``k`` multilabel thresholds; ``ValueError`` when they were fitted for another k."""
        if self.thresholds is not None and len(self.thresholds) != k:
            raise ValueError(f"calibration has {len(self.thresholds)} thresholds, model has {k}")
        return as_thresholds(None if self.thresholds is None else np.asarray(self.thresholds), k=k)

    def to_json(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "thresholds": self.thresholds}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Calibration:
        """Inverse of ``to_json``; ``None`` or missing keys mean no calibration."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("calibration must be a JSON object")
        thresholds = data.get("thresholds")
        if thresholds is not None and not isinstance(thresholds, list):
            raise ValueError("thresholds must be a list of numbers")
        return cls(temperature=data.get("temperature"), thresholds=thresholds)


def fit_calibration(
    logits: np.ndarray,
    y_true: np.ndarray,
    *,
    multilabel: bool,
    temperature_scaling: bool,
    tune_thresholds: bool,
) -> Calibration:
    """Fit on validation logits: the temperature first, then (multilabel) thresholds on the
    temperature-scaled probabilities, since those are the probabilities serving thresholds."""
    temperature = (
        fit_temperature(logits, y_true, multilabel=multilabel) if temperature_scaling else None
    )
    thresholds = None
    if multilabel and tune_thresholds:
        probs = Calibration(temperature=temperature).probabilities(logits, multilabel=True)
        thresholds = [float(t) for t in _tune_thresholds(probs, y_true)]
    return Calibration(temperature=temperature, thresholds=thresholds)
