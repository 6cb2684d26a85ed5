"""Numerically stable softmax / sigmoid and the two training losses, in float64 numpy."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise softmax; subtracting the row maximum keeps ``exp`` from overflowing."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return out


def sigmoid(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """Element-wise logistic function, never evaluating ``exp`` of a large positive number."""
    exp = np.exp(-np.abs(logits))
    out: NDArray[np.float64] = np.where(logits >= 0, 1.0 / (1.0 + exp), exp / (1.0 + exp))
    return out


def cross_entropy(logits: NDArray[np.float64], y_true: NDArray[np.int64]) -> float:
    """Mean negative log-likelihood of the true class (``torch.nn.functional.cross_entropy``)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    true_logit = shifted[np.arange(len(y_true)), y_true]
    return float(np.mean(log_norm - true_logit))


def binary_cross_entropy(logits: NDArray[np.float64], y_true: NDArray[np.int64]) -> float:
    """Mean BCE over every (example, label) cell (``binary_cross_entropy_with_logits``)."""
    losses = np.maximum(logits, 0.0) - logits * y_true + np.log1p(np.exp(-np.abs(logits)))
    return float(np.mean(losses))
