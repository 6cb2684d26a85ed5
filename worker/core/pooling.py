"""Turning token states into one feature vector per example.

``auto`` pools the way the base was trained: a sentence-transformers directory says so in
``1_Pooling/config.json``; a decoder (GPT-style) pools its last real token, the one that has
read the whole text; any other directory pools the [CLS] state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from app.base_models.decoders import is_decoder_config
from app.base_models.modality import reads_images
from app.base_models.pooling import CONFIG as POOLING_CONFIG
from app.base_models.pooling import declared_pooling

PoolingMode = Literal["cls", "mean", "max", "pooler", "last", "embeds"]
POOLING_MODES: frozenset[str] = frozenset({"cls", "mean", "max", "pooler", "last", "embeds"})


def resolve_pooling(base_model_dir: Path, requested: str) -> PoolingMode:
    """The concrete pooling mode for ``requested`` (``auto`` reads the base directory)."""
    if requested != "auto":
        if requested not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {requested!r}")
        return requested  # type: ignore[return-value]
    mode, config = declared_pooling(base_model_dir)
    if config is None:
        return _default_pooling(base_model_dir)
    if mode is None:
        enabled = sorted(key for key, value in config.items() if value is True)
        raise ValueError(
            f"{base_model_dir / POOLING_CONFIG}: unsupported sentence-transformers pooling "
            f"{enabled}; choose pooling 'mean', 'cls' or 'pooler' explicitly"
        )
    return mode  # type: ignore[return-value]


def pool(outputs: Any, attention_mask: torch.Tensor | None, mode: PoolingMode) -> torch.Tensor:
    """Pool a backbone's outputs (``last_hidden_state``, ``pooler_output``): ``[batch, hidden]``.
    Image backbones have no attention mask: ``pooler`` (a CNN's global average pool comes as
    ``[batch, channels, 1, 1]`` and is flattened) or ``cls``."""
    if mode == "embeds":  # CLIP's projected image embedding, L2-normalised
        embeds: torch.Tensor = outputs.image_embeds
        return torch.nn.functional.normalize(embeds.float(), dim=-1)
    if mode == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise ValueError("pooling 'pooler' needs a backbone with a pooler layer")
        return pooled.flatten(1)
    hidden: torch.Tensor = outputs.last_hidden_state
    if mode == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        raise ValueError(f"pooling {mode!r} needs token states and an attention mask")
    if mode == "last":  # the last real token, whichever side the padding is on
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        last = (attention_mask.to(hidden.device) * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    raise ValueError(f"unknown pooling mode {mode!r}")


#: image encoders whose own classifier reads the [CLS] token (the others pool globally)
_CLS_IMAGE_MODELS = frozenset({"vit", "dinov2"})


def _default_pooling(model_dir: Path) -> PoolingMode:
    """``auto`` without a sentence-transformers config: a decoder's last token; CLIP's
    normalised image embedding; an image model's own pooling ([CLS] for ViT, the pooled output
    for CNNs); else [CLS]."""
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if is_decoder_config(config):
        return "last"
    if config.get("model_type") == "clip":
        return "embeds"  # the space CLIP's text tower shares: zero-shot heads live there too
    if reads_images(config):
        return "cls" if config.get("model_type") in _CLS_IMAGE_MODELS else "pooler"
    return "cls"
