"""Pure evaluation of a trained classifier: numpy arrays in, JSON-able dicts out.

No torch at import time (``fit_temperature`` imports it when called), no database, no files
except the PNGs ``plots.render_plots`` writes. Every number in a returned dict is a plain
Python ``int``/``float`` (never a numpy type, never NaN: an undefined value is ``None``).

- ``metrics``      accuracy / F1 / per-label scores / confusion matrices (scikit-learn)
- ``thresholds``   per-label decision thresholds tuned for F1 (multilabel)
- ``calibration``  expected calibration error, temperature scaling, the ``Calibration`` record
- ``evaluate``     one split's full report: loss, metrics, calibration before and after
- ``plots``        training curves, confusion matrix, reliability diagram as PNG files
"""

from worker.evaluation.calibration import (
    Calibration,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
)
from worker.evaluation.evaluate import evaluate_split
from worker.evaluation.metrics import classification_metrics
from worker.evaluation.thresholds import tune_thresholds

__all__ = [
    "Calibration",
    "classification_metrics",
    "evaluate_split",
    "expected_calibration_error",
    "fit_calibration",
    "fit_temperature",
    "tune_thresholds",
]
