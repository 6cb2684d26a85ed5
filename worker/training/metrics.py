"""Validation metrics (scikit-learn) and the loss used for training and evaluation."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch.nn import functional as F

#: a label is predicted when its sigmoid score reaches this (multilabel)
MULTILABEL_THRESHOLD = 0.5


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, *, multilabel: bool) -> torch.Tensor:
    """Cross entropy on class indices, or BCE-with-logits on multi-hot float targets."""
    logits = logits.float()
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels)


def validation_metrics(
    logits: torch.Tensor, labels: torch.Tensor, *, multilabel: bool
) -> dict[str, float]:
    """``val_loss`` plus accuracy / F1 scores computed on CPU numpy arrays.

    single-label: ``val_accuracy``, ``val_macro_f1``;
    multilabel (threshold 0.5): ``val_micro_f1``, ``val_macro_f1``, ``val_subset_accuracy``.
    """
    logits = logits.detach().float().cpu()
    labels = labels.detach().cpu()
    metrics = {"val_loss": float(loss_fn(logits, labels, multilabel=multilabel))}
    if multilabel:
        y_true = labels.numpy().astype(np.int64)
        y_pred = (torch.sigmoid(logits) >= MULTILABEL_THRESHOLD).numpy().astype(np.int64)
        metrics["val_micro_f1"] = float(f1_score(y_true, y_pred, average="micro", zero_division=0))
        metrics["val_macro_f1"] = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
        metrics["val_subset_accuracy"] = float(accuracy_score(y_true, y_pred))
    else:
        y_true = labels.numpy()
        y_pred = logits.argmax(dim=-1).numpy()
        metrics["val_accuracy"] = float(accuracy_score(y_true, y_pred))
        metrics["val_macro_f1"] = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    return metrics
