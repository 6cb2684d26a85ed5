"""Per-label decision thresholds for multilabel classification, tuned for F1.

Each label gets the threshold on the fixed grid 0.01, 0.02, ..., 0.99 that maximises that
label's own F1 (``tp / (tp + (fp + fn) / 2)``, as scikit-learn's ``f1_score``) on the given
probabilities, which should come from a validation set, never the test set. Ties go to the
threshold closest to 0.5 (the lower one when two are equally close), so a label that is easy
to separate keeps the usual 0.5; a label with no positive example keeps 0.5 too.
"""

from __future__ import annotations

import numpy as np

from worker.evaluation._checks import as_probabilities, as_targets

DEFAULT_THRESHOLD = 0.5
#: the candidate thresholds, in hundredths
_GRID_HUNDREDTHS = np.arange(1, 100)
THRESHOLD_GRID = _GRID_HUNDREDTHS / 100.0


def tune_thresholds(probs: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """One F1-maximising threshold per label column of ``probs`` (``(n, k)``, in [0, 1]).

    ``y_true`` is the ``(n, k)`` 0/1 label matrix. A label is predicted when its probability
    is ``>=`` its threshold, as in ``classification_metrics``.
    """
    scores = as_probabilities(probs)
    n, k = scores.shape
    targets = as_targets(y_true, n=n, k=k, multilabel=True).astype(bool)
    distance = np.abs(_GRID_HUNDREDTHS - 50)
    tuned = np.full(k, DEFAULT_THRESHOLD)
    for label in range(k):
        positive = targets[:, label]
        positives = int(positive.sum())
        if positives == 0:
            continue
        predicted = scores[:, label, None] >= THRESHOLD_GRID[None, :]  # (n, grid)
        tp = (predicted & positive[:, None]).sum(axis=0)
        fp = predicted.sum(axis=0) - tp
        fn = positives - tp
        f1 = 2 * tp / (2 * tp + fp + fn)  # the denominator is >= positives > 0
        best = np.flatnonzero(f1 == f1.max())
        tuned[label] = THRESHOLD_GRID[best[np.argmin(distance[best])]]
    return tuned
