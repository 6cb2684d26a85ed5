"""What kind of model a ``config.json`` describes, and what it can train: read from JSON only.

Every listed base model has a ``modality`` (what its inputs are), a ``family`` (how it is built,
which decides how the worker pools it and which layers LoRA adapts) and the dataset tasks it can
train on. Image models also need an image processor config saved beside them (the worker resizes
and normalises with it); a CLIP model offers zero-shot classification when its tokenizer is
saved too. Which ``model_type`` values are image models is app/base_models/modality.py's
to say (the worker's loaders ask it too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from app.base_models.modality import IMAGE_MODEL_TYPES, IMAGE_TEXT_MODEL_TYPES, Modality
from app.contract.tasks import IMAGE_CLASSIFICATION, IMAGE_MULTILABEL, LABELED_TEXT_TASKS, TASKS

__all__ = ["Family", "Kind", "Modality", "classify", "processed_image_size"]

Family = Literal["encoder", "decoder", "convnet", "vision-transformer", "dual-encoder"]

TEXT_ENCODER_TYPES: Final = frozenset(
    {
        "bert",
        "distilbert",
        "roberta",
        "xlm-roberta",
        "electra",
        "deberta",
        "deberta-v2",
        "mpnet",
        "albert",
        "camembert",
        "modernbert",
        "ernie",
    }
)
#: GPT-2-style decoders offered as bases (classified through the Auto classes, last-token
#: pooling); app/base_models/decoders.py knows more decoder types, to refuse masked-LM for them
TEXT_DECODER_TYPES: Final = frozenset({"gpt2"})
#: the convolutional ones among app/base_models/modality.py's image types (the one list of
#: image architectures); the others there are vision transformers
CONVNET_TYPES: Final = frozenset({"resnet", "convnext", "mobilenet_v2"})

TEXT_TASKS: Final = tuple(task for task in TASKS if task in LABELED_TEXT_TASKS)
IMAGE_TASKS: Final = (IMAGE_CLASSIFICATION, IMAGE_MULTILABEL)

#: the image processor's own file, and the combined processor file newer transformers write
PREPROCESSOR_CONFIG: Final = "preprocessor_config.json"
PROCESSOR_CONFIG: Final = "processor_config.json"
#: any of these beside a CLIP model means its tokenizer was saved (the text tower is usable)
TOKENIZER_FILES: Final = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer_config.json")


@dataclass(frozen=True)
class Kind:
    modality: Modality
    family: Family
    #: the dataset tasks it can train on, in the API's task order
    tasks: tuple[str, ...]
    #: ``task_families`` of the listing: "text" or "image", what a job's dataset must be
    task_families: tuple[str, ...]
    #: longest text input (position embeddings), for models that read text
    max_length: int | None = None
    #: the side (pixels) its processor gives images, for models that read images
    image_size: int | None = None
    #: classifies images against label names without training (CLIP with its tokenizer)
    zero_shot: bool = False


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def image_processor_config(path: Path) -> dict[str, Any] | None:
    """The image processor config saved in ``path`` (``preprocessor_config.json``, or the
    ``image_processor`` entry of ``processor_config.json``); None when there is none."""
    standalone = path / PREPROCESSOR_CONFIG
    if standalone.is_file():
        loaded = json.loads(standalone.read_text(encoding="utf-8"))
        return loaded if isinstance(loaded, dict) else None
    combined = path / PROCESSOR_CONFIG
    if combined.is_file():
        loaded = json.loads(combined.read_text(encoding="utf-8"))
        entry = loaded.get("image_processor") if isinstance(loaded, dict) else None
        return entry if isinstance(entry, dict) else None
    return None


def _side(value: Any) -> int | None:
    """The output side of a processor ``size``/``crop_size``: an int, or a dict with
    height (== width) or shortest_edge."""
    if isinstance(value, dict):
        height, width = _positive_int(value.get("height")), _positive_int(value.get("width"))
        if height is not None and height == width:
            return height
        return _positive_int(value.get("shortest_edge"))
    return _positive_int(value)


def processed_image_size(processor: dict[str, Any], config: dict[str, Any]) -> int | None:
    """The side of the images the model sees: the centre crop if the processor crops, else its
    resize, else the config's ``image_size``."""
    if processor.get("do_center_crop") and _side(processor.get("crop_size")) is not None:
        return _side(processor.get("crop_size"))
    side = _side(processor.get("size"))
    if side is not None:
        return side
    vision = config.get("vision_config")
    source = vision if isinstance(vision, dict) else config
    return _positive_int(source.get("image_size"))


def _text_positions(config: dict[str, Any]) -> int | None:
    return _positive_int(config.get("max_position_embeddings")) or _positive_int(
        config.get("n_positions")
    )


def classify(config: dict[str, Any], path: Path) -> Kind | None:
    """The kind of the model ``config`` describes in directory ``path``; None when tuneserve
    cannot train it (an unknown type, or an image model without its image processor)."""
    model_type = str(config.get("model_type", ""))
    if model_type in TEXT_ENCODER_TYPES:
        return Kind("text", "encoder", TEXT_TASKS, ("text",), max_length=_text_positions(config))
    if model_type in TEXT_DECODER_TYPES:
        return Kind("text", "decoder", TEXT_TASKS, ("text",), max_length=_text_positions(config))
    if model_type not in IMAGE_MODEL_TYPES | IMAGE_TEXT_MODEL_TYPES:
        return None
    processor = image_processor_config(path)
    if processor is None:
        return None
    image_size = processed_image_size(processor, config)
    if model_type in IMAGE_TEXT_MODEL_TYPES:
        text = config.get("text_config")
        max_length = _text_positions(text) if isinstance(text, dict) else None
        zero_shot = any((path / name).is_file() for name in TOKENIZER_FILES)
        return Kind(
            "image-text",
            "dual-encoder",
            IMAGE_TASKS,
            ("image",),
            max_length=max_length,
            image_size=image_size,
            zero_shot=zero_shot,
        )
    family: Family = "convnet" if model_type in CONVNET_TYPES else "vision-transformer"
    return Kind("image", family, IMAGE_TASKS, ("image",), image_size=image_size)
