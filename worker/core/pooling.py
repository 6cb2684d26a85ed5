"""Turning token states into one feature vector per example.

``auto`` pools the way the base was trained: a sentence-transformers directory says so in
``1_Pooling/config.json``; any other directory pools the [CLS] state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

PoolingMode = Literal["cls", "mean", "max", "pooler"]
POOLING_MODES: frozenset[str] = frozenset({"cls", "mean", "max", "pooler"})

_ST_FLAGS: tuple[tuple[str, PoolingMode], ...] = (
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
)


def resolve_pooling(base_model_dir: Path, requested: str) -> PoolingMode:
    """The concrete pooling mode for ``requested`` (``auto`` reads the base directory)."""
    if requested != "auto":
        if requested not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {requested!r}")
        return requested  # type: ignore[return-value]
    config_path = base_model_dir / "1_Pooling" / "config.json"
    if not config_path.is_file():
        return "cls"
    config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    for flag, mode in _ST_FLAGS:
        if config.get(flag):
            return mode
    enabled = sorted(key for key, value in config.items() if value is True)
    raise ValueError(
        f"{config_path}: unsupported sentence-transformers pooling {enabled}; "
        "choose pooling 'mean', 'cls' or 'pooler' explicitly"
    )


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
