"""What a base model reads, from its ``config.json`` (no torch): text, images, or both (CLIP).

The one place the image architectures are named: the base-model listing, the API's checks
and the worker's loaders all ask here.
"""

from __future__ import annotations

from typing import Any, Literal

Modality = Literal["text", "image", "image-text"]
#: ``model_type`` values of image classifiers/encoders tuneserve trains
IMAGE_MODEL_TYPES = frozenset({"resnet", "vit", "convnext", "mobilenet_v2", "dinov2", "swin"})
#: models with an image tower and a text tower (the vision tower trains; zero-shot uses both)
IMAGE_TEXT_MODEL_TYPES = frozenset({"clip", "siglip"})


def modality_of(config: dict[str, Any]) -> Modality:
    model_type = config.get("model_type")
    if model_type in IMAGE_TEXT_MODEL_TYPES:
        return "image-text"
    if model_type in IMAGE_MODEL_TYPES:
        return "image"
    return "text"


def reads_images(config: dict[str, Any]) -> bool:
    """True when the model has an image tower (image or image-text)."""
    return modality_of(config) != "text"
