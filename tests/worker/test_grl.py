"""Gradient reversal: identity forward, gradient times ``-lambda`` backward; DANN's ramp."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

from worker.training.grl import reversal_weight, reverse_gradient


@pytest.mark.parametrize("lambda_", [0.0, 0.3, 1.0, 2.5])
def test_identity_forward_flipped_scaled_gradient_backward(lambda_: float) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 3, generator=generator, dtype=torch.float64)

    y = reverse_gradient(x, lambda_)
    assert torch.equal(y, x)
    y.backward(upstream)

    assert x.grad is not None
    assert torch.equal(x.grad, -lambda_ * upstream)


def test_reversal_matches_negated_scaled_jacobian_through_layers() -> None:
    # a layer below the reversal gets exactly -lambda times the gradient it gets without it
    torch.manual_seed(0)
    below, above = torch.nn.Linear(5, 4).double(), torch.nn.Linear(4, 1).double()
    x = torch.randn(6, 5, dtype=torch.float64)

    above(below(x)).sum().backward()
    plain = below.weight.grad.clone()  # type: ignore[union-attr]
    below.zero_grad()
    above.zero_grad()
    above(reverse_gradient(below(x), 0.7)).sum().backward()

    assert torch.allclose(below.weight.grad, -0.7 * plain)  # type: ignore[arg-type]
    # the layer above the reversal (the domain classifier) learns as usual
    assert above.weight.grad is not None and above.weight.grad.abs().sum() > 0


def test_backward_jacobian_is_minus_lambda_identity() -> None:
    # what autograd sees (the backward) is the Jacobian of x -> -lambda * x, although the
    # forward is the identity: gradcheck would (rightly) reject it as a true gradient
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    seen = torch.autograd.functional.jacobian(lambda t: reverse_gradient(t, 0.5), x)
    expected = torch.autograd.functional.jacobian(lambda t: -0.5 * t, x)
    assert torch.equal(seen, expected)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda t: reverse_gradient(t, 0.5), (x,))


def test_reversal_weight_schedule() -> None:
    assert reversal_weight(0.0) == 0.0
    assert reversal_weight(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert reversal_weight(1.0) == pytest.approx(1.0, abs=1e-4)
    assert reversal_weight(1.0, weight=0.3, gamma=10) == pytest.approx(0.3, abs=1e-4)
    assert reversal_weight(-1.0) == 0.0 and reversal_weight(2.0) == reversal_weight(1.0)
    values = [reversal_weight(step / 20, gamma=5) for step in range(21)]
    assert values == sorted(values) and len(set(values)) == len(values)
