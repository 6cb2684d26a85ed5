"""Layer groups of an encoder classifier, top down (``partial``, ``gradual_unfreeze`` and
``full``'s layer-wise decay).

Group 0 is the head (the classifier, the pooler and anything else outside the encoder
layers and the embeddings), group ``k`` for ``1 <= k <= L`` is encoder layer ``L - k`` (so
group 1 is the top layer), group ``L + 1`` the embeddings (the stem of an image model).
Layers are found by name: a CNN's stages (``.stages.<i>.``: ResNet, ConvNeXt) or blocks
(``.layer.<i>.``, ``.layers.<i>.``: BERT, ViT, CLIP, MobileNetV2; GPT-2's ``.h.<i>.``); the
embeddings by ``embed`` (``embeddings``, ResNet's ``embedder``), GPT-2's ``wte`` / ``wpe`` or
MobileNetV2's ``conv_stem``. ``L`` is the number of layers found. A final layer norm or a
CNN's last 1x1 convolution counts with the head.
"""

from __future__ import annotations

import re

from torch import nn

_STAGE_INDEX = re.compile(r"\.stages\.(\d+)\.")
_LAYER_INDEX = re.compile(r"\.(?:layers?|h)\.(\d+)\.")
_EMBEDDINGS = re.compile(r"embed|\.wte\.|\.wpe\.|conv_stem")


def layer_index(name: str) -> int | None:
    """The index of the layer (or CNN stage) parameter ``name`` belongs to, if any."""
    match = _STAGE_INDEX.search(name) or _LAYER_INDEX.search(name)
    return int(match.group(1)) if match is not None else None


HEAD_GROUP = "head"
EMBEDDINGS_GROUP = "embeddings"


def layer_group(name: str, num_layers: int) -> int:
    """The group index of parameter ``name``: 0 head, 1 top layer, ..., L + 1 embeddings."""
    index = layer_index(name)
    if index is not None:
        return num_layers - index
    if _EMBEDDINGS.search(name):
        return num_layers + 1
    return 0


def group_names(num_layers: int) -> list[str]:
    """``["head", "layer.<L-1>", ..., "layer.0", "embeddings"]``: index = group index."""
    layers = [f"layer.{index}" for index in reversed(range(num_layers))]
    return [HEAD_GROUP, *layers, EMBEDDINGS_GROUP]


def num_layers_of(model: nn.Module) -> int:
    """How many layers (or stages) the model's parameter names show."""
    found = [layer_index(name) for name, _ in model.named_parameters()]
    indices = [index for index in found if index is not None]
    return max(indices) + 1 if indices else 0
