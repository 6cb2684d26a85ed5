"""A base model directory loaded as a classifier for a label set, as a bare encoder, or its
tokenizer.

Safetensors only, float32 weights, no remote code: the one place the loading arguments are
written (training strategies and serving both load through here). Decoders (GPT-2 style)
ship no pad token: the tokenizer pads with the end-of-text token and the classifier is told
so (``pad_token_id``), so that it reads each text's last real token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    CLIPVisionModelWithProjection,
)

from app.base_models.modality import reads_images


def reads_images_dir(model_dir: Path) -> bool:
    """True when ``model_dir`` holds an image model (or an image-text one such as CLIP)."""
    return reads_images(json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")))


def load_classifier(base_model_dir: Path, *, label_names: list[str], multilabel: bool) -> Any:
    """The base with a new head for ``label_names``: ``AutoModelForSequenceClassification``, or
    ``AutoModelForImageClassification`` for an image base (CLIP: its vision tower)."""
    config = AutoConfig.from_pretrained(base_model_dir)
    auto = (
        AutoModelForImageClassification
        if reads_images_dir(base_model_dir)
        else AutoModelForSequenceClassification
    )
    padding: dict[str, Any] = {}
    if pad_token_of(config) != getattr(config, "pad_token_id", None):
        padding["pad_token_id"] = pad_token_of(config)
    model = auto.from_pretrained(
        base_model_dir,
        use_safetensors=True,
        **padding,
        dtype=torch.float32,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={label: index for index, label in enumerate(label_names)},
        problem_type="multi_label_classification" if multilabel else "single_label_classification",
        ignore_mismatched_sizes=True,
    )
    for module in model.modules():
        # transformers' MobileNetV2 gives BatchNorm TensorFlow's decay (0.997) as PyTorch's
        # momentum, so training would keep little more than the last batch's statistics
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.momentum or 0) > 0.5:
            module.momentum = 0.1
    return model


def load_encoder(base_model_dir: Path) -> Any:
    """The base as a bare encoder (``AutoModel``: token or patch states out), float32; for an
    image-text model (CLIP) its vision tower with its projection (``image_embeds``)."""
    config = json.loads((Path(base_model_dir) / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") == "clip":
        # the projection's size is the CLIP config's, not its vision config's (default 512)
        return CLIPVisionModelWithProjection.from_pretrained(
            base_model_dir,
            use_safetensors=True,
            dtype=torch.float32,
            projection_dim=int(config.get("projection_dim", 512)),
        )
    return AutoModel.from_pretrained(base_model_dir, use_safetensors=True, dtype=torch.float32)


def load_processor(model_dir: Path, *, images: bool) -> Any:
    """What turns raw inputs into model inputs: the image processor for image tasks, else the
    tokenizer (:func:`load_tokenizer`)."""
    if images:
        return AutoImageProcessor.from_pretrained(model_dir)
    return load_tokenizer(model_dir)


def pad_token_of(config: Any) -> int | None:
    """The config's pad token id, or for a decoder without one its end-of-text token (the
    classifier finds each text's last real token by it)."""
    pad = getattr(config, "pad_token_id", None)
    eos = getattr(config, "eos_token_id", None)
    if pad is None and eos is not None:
        return int(eos[0] if isinstance(eos, list) else eos)
    return pad


def load_tokenizer(model_dir: Path) -> Any:
    """The directory's tokenizer; one without a pad token pads with its end-of-text token."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
