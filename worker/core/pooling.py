"""Turning token states into one feature vector per example.

``auto`` pools the way the base was trained: a sentence-transformers directory says so in
``1_Pooling/config.json``; any other directory pools the [CLS] state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from app.base_models.pooling import CONFIG as POOLING_CONFIG
from app.base_models.pooling import declared_pooling

PoolingMode = Literal["cls", "mean", "max", "pooler"]
POOLING_MODES: frozenset[str] = frozenset({"cls", "mean", "max", "pooler"})


def resolve_pooling(base_model_dir: Path, requested: str) -> PoolingMode:
    """The concrete pooling mode for ``requested`` (``auto`` reads the base directory)."""
    if requested != "auto":
        if requested not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {requested!r}")
        return requested  # type: ignore[return-value]
    mode, config = declared_pooling(base_model_dir)
    if config is None:
        return "cls"
    if mode is None:
        enabled = sorted(key for key, value in config.items() if value is True)
        raise ValueError(
            f"{base_model_dir / POOLING_CONFIG}: unsupported sentence-transformers pooling "
            f"{enabled}; choose pooling 'mean', 'cls' or 'pooler' explicitly"
        )
    return mode  # type: ignore[return-value]


def pool(outputs: Any, attention_mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """Pool a backbone's outputs (``last_hidden_state``, ``pooler_output``): ``[batch, hidden]``."""
    if mode == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise ValueError("pooling 'pooler' needs a backbone with a pooler layer")
        return pooled
    hidden: torch.Tensor = outputs.last_hidden_state
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    raise ValueError(f"unknown pooling mode {mode!r}")
