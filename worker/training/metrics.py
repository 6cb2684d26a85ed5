"""Validation metrics (scikit-learn), the training loss and its class weights.

Every evaluation reports ``val_loss`` (unweighted), ``val_macro_f1`` and ``val_micro_f1``;
single-label adds ``val_accuracy``, multi-label ``val_subset_accuracy`` (at 0.5; thresholds
tuned on validation are applied after training, see ``worker.evaluation``). With label names,
per-class ``val_precision/<label>``, ``val_recall/<label>`` and ``val_f1/<label>`` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from torch.nn import functional as F

from worker.core.data import Examples

#: a label is predicted when its sigmoid score reaches this (multilabel), unless tuned
MULTILABEL_THRESHOLD = 0.5
#: bounds of an ``auto`` weight, so one tiny class cannot dominate the loss
_AUTO_WEIGHT_RANGE = (0.01, 100.0)


def loss_fn(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    multilabel: bool,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross entropy on class indices, or BCE-with-logits on multi-hot float targets.

    ``class_weights`` weights each class (cross entropy's ``weight``) or each label's
    positives (BCE's ``pos_weight``)."""
    logits = logits.float()
    weights = class_weights.to(logits.device) if class_weights is not None else None
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)
    return F.cross_entropy(logits, labels, weight=weights)


def class_weight_tensor(
    spec: Literal["auto"] | dict[str, float] | None,
    train: Examples,
    *,
    label_names: list[str],
    multilabel: bool,
) -> torch.Tensor | None:
    """The loss weights a job asked for: None, ``auto`` (balanced) or one per label name.

    ``auto``, single-label: ``n / (k * count_c)`` (scikit-learn's ``balanced``);
    multi-label: ``negatives / positives`` per label. Both clipped to [0.01, 100]."""
    if spec is None:
        return None
    k = len(label_names)
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(label_names))
        if unknown:
            raise ValueError(f"class_weights names labels the dataset lacks: {unknown[:10]}")
        return torch.tensor([float(spec.get(name, 1.0)) for name in label_names])
    n = len(train.labels)
    counts = np.zeros(k)
    for label in train.labels:
        counts[label] += 1  # a list of indices adds one to each (multi-label)
    if multilabel:
        weights = (n - counts) / np.maximum(counts, 1.0)
    else:
        weights = n / (k * np.maximum(counts, 1.0))
    return torch.tensor(np.clip(weights, *_AUTO_WEIGHT_RANGE), dtype=torch.float32)


def validation_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    multilabel: bool,
    label_names: Sequence[str] = (),
) -> dict[str, float]:
    """``val_loss`` plus accuracy / F1 scores computed on CPU numpy arrays; see the module."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().cpu()
    metrics = {"val_loss": float(loss_fn(logits, labels, multilabel=multilabel))}
    if multilabel:
        y_true = labels.numpy().astype(np.int64)
        y_pred = (torch.sigmoid(logits) >= MULTILABEL_THRESHOLD).numpy().astype(np.int64)
        metrics["val_subset_accuracy"] = float(accuracy_score(y_true, y_pred))
    else:
        y_true = labels.numpy()
        y_pred = logits.argmax(dim=-1).numpy()
        metrics["val_accuracy"] = float(accuracy_score(y_true, y_pred))
    for average in ("macro", "micro"):
        score = f1_score(y_true, y_pred, average=average, zero_division=0)
        metrics[f"val_{average}_f1"] = float(score)
    if label_names:
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=list(range(len(label_names))), zero_division=0
        )
        for index, name in enumerate(label_names):
            metrics[f"val_precision/{name}"] = float(precision[index])
            metrics[f"val_recall/{name}"] = float(recall[index])
            metrics[f"val_f1/{name}"] = float(f1[index])
    return metrics
