"""Loss weights: ``class_weights: auto`` matches scikit-learn's ``balanced`` and moves the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from worker.core.data import Examples
from worker.training.metrics import class_weight_tensor, loss_fn

LABELS = ["a", "b", "c"]


def test_auto_is_sklearn_balanced() -> None:
    y = [0] * 12 + [1] * 3 + [2] * 1
    weights = class_weight_tensor(
        "auto", Examples(["t"] * len(y), y), label_names=LABELS, multilabel=False
    )
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(y))
    assert weights is not None
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    assert weights.tolist() == pytest.approx([16 / 36, 16 / 9, 16 / 3])


def test_auto_multilabel_is_negatives_over_positives() -> None:
    y = [[0], [0, 1], [0], [2], [0]]
    weights = class_weight_tensor(
        "auto", Examples(["t"] * 5, y), label_names=LABELS, multilabel=True
    )
    assert weights is not None
    assert weights.tolist() == pytest.approx([1 / 4, 4 / 1, 4 / 1])


def test_explicit_weights_by_name_and_unknown_names() -> None:
    ex = Examples(["t"] * 2, [0, 1])
    weights = class_weight_tensor({"c": 2.5}, ex, label_names=LABELS, multilabel=False)
    assert weights is not None and weights.tolist() == [1.0, 1.0, 2.5]
    with pytest.raises(ValueError, match="lacks"):
        class_weight_tensor({"zzz": 2.0}, ex, label_names=LABELS, multilabel=False)
    assert class_weight_tensor(None, ex, label_names=LABELS, multilabel=False) is None


def test_weighted_loss_equals_torch_weighted_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    labels = torch.tensor([0, 1, 2])
    w = torch.tensor([0.5, 1.0, 4.0])
    weighted = loss_fn(logits, labels, multilabel=False, class_weights=w)
    per_example = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert float(weighted) == pytest.approx(float((per_example * w).sum() / w.sum()))
    assert float(weighted) > float(loss_fn(logits, labels, multilabel=False))
