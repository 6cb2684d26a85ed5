"""Same seed, same weights (CPU); another seed, other weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from app.contract.strategies import FullStrategy, LinearProbeStrategy


def _state(trained: Any) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu() for name, tensor in trained.model.state_dict().items()}


@pytest.mark.parametrize("strategy", [FullStrategy(), LinearProbeStrategy()], ids=lambda s: s.name)
def test_same_seed_same_weights(tiny_bert_dir: Path, tiny_trainer: Any, strategy: Any) -> None:
    first = _state(tiny_trainer(tiny_bert_dir, strategy, epochs=2, seed=7))
    second = _state(tiny_trainer(tiny_bert_dir, strategy, epochs=2, seed=7))
    other = _state(tiny_trainer(tiny_bert_dir, strategy, epochs=2, seed=8))
    assert first.keys() == second.keys() == other.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
