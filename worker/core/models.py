"""A base model directory loaded as a classifier for a label set, or as a bare encoder.

Safetensors only, float32 weights, no remote code: the one place the classifier-loading
arguments are written (training strategies and serving both load through here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoModelForSequenceClassification


def load_classifier(base_model_dir: Path, *, label_names: list[str], multilabel: bool) -> Any:
    """The base as ``AutoModelForSequenceClassification`` with a new head for ``label_names``."""
    return AutoModelForSequenceClassification.from_pretrained(
        base_model_dir,
        use_safetensors=True,
        dtype=torch.float32,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={label: index for index, label in enumerate(label_names)},
        problem_type="multi_label_classification" if multilabel else "single_label_classification",
        ignore_mismatched_sizes=True,
    )


def load_encoder(base_model_dir: Path) -> Any:
    """The base as a bare ``AutoModel`` (token states out), float32."""
    return AutoModel.from_pretrained(base_model_dir, use_safetensors=True, dtype=torch.float32)
