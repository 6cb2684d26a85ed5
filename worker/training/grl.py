"""Gradient reversal (Ganin & Lempitsky 2015): identity forward, gradient times ``-lambda`` back.

Placed between a feature extractor and a domain classifier, it lets the classifier learn to
tell the domains apart while the features below learn to make that impossible.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class GradientReversal(torch.autograd.Function):
    """``y = x`` forward; ``dL/dx = -lambda * dL/dy`` backward (no gradient for ``lambda``)."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = float(lambda_)
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_outputs[0].neg() * ctx.lambda_, None


def reverse_gradient(features: torch.Tensor, lambda_: float) -> torch.Tensor:
    """``features`` unchanged; the gradient flowing back through it is scaled by ``-lambda_``."""
    result: torch.Tensor = GradientReversal.apply(features, lambda_)
    return result


def reversal_weight(progress: float, *, weight: float = 1.0, gamma: float = 10.0) -> float:
    """DANN's ramp: ``weight * (2 / (1 + exp(-gamma * p)) - 1)``, ``p`` clamped to [0, 1].

    0 at the start of training, approaching ``weight`` as ``p`` goes to 1.
    """
    p = min(max(progress, 0.0), 1.0)
    return weight * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)
