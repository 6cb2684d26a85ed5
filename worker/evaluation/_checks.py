"""Input validation shared by the evaluation modules: shapes, ranges, finiteness.

Every check raises ``ValueError`` with a message naming the offending argument.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def as_scores(scores: np.ndarray, *, name: str) -> NDArray[np.float64]:
    """A finite float64 ``(n, k)`` array with ``n >= 1`` and ``k >= 1``."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (examples, labels), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} has no examples: nothing to evaluate")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no label columns")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def as_probabilities(probs: np.ndarray) -> NDArray[np.float64]:
    """Like ``as_scores``, and every value in ``[0, 1]`` (catches logits passed by mistake)."""
    array = as_scores(probs, name="probs")
    if array.min() < 0.0 or array.max() > 1.0:
        raise ValueError("probs must lie in [0, 1]; turn logits into probabilities first")
    return array


def as_targets(y_true: np.ndarray, *, n: int, k: int, multilabel: bool) -> NDArray[np.int64]:
    """Class indices ``(n,)`` in ``[0, k)``, or a 0/1 indicator matrix ``(n, k)``."""
    array = np.asarray(y_true)
    if multilabel:
        if array.shape != (n, k):
            raise ValueError(f"y_true must have shape {(n, k)} (multilabel), got {array.shape}")
        if not np.isin(array, (0, 1)).all():
            raise ValueError("multilabel y_true must contain only 0 and 1")
        return array.astype(np.int64)
    if array.shape != (n,):
        raise ValueError(f"y_true must have shape {(n,)} (class indices), got {array.shape}")
    if array.dtype.kind not in "iu":
        raise ValueError(f"y_true must hold integer class indices, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= k:
        raise ValueError(f"y_true class indices must lie in [0, {k})")
    return array.astype(np.int64)


def as_thresholds(thresholds: np.ndarray | None, *, k: int) -> NDArray[np.float64]:
    """``k`` finite thresholds in ``[0, 1]``; ``None`` means 0.5 for every label."""
    if thresholds is None:
        return np.full(k, 0.5)
    array = np.asarray(thresholds, dtype=np.float64)
    if array.shape != (k,):
        raise ValueError(f"thresholds must have shape {(k,)}, got {array.shape}")
    if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError("thresholds must be finite and lie in [0, 1]")
    return array
