"""Layer groups of an encoder classifier, top down (``partial``, ``gradual_unfreeze`` and
``full``'s layer-wise decay).

Group 0 is the head (the classifier, the pooler and anything else outside the encoder
layers and the embeddings), group ``k`` for ``1 <= k <= L`` is encoder layer ``L - k`` (so
group 1 is the top layer), group ``L + 1`` the embeddings. Layers are found by name
(``.layer.<i>.`` / ``.layers.<i>.``).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")
HEAD_GROUP = "head"
EMBEDDINGS_GROUP = "embeddings"


def layer_group(name: str, num_layers: int) -> int:
    """The group index of parameter ``name``: 0 head, 1 top layer, ..., L + 1 embeddings."""
    match = _LAYER_INDEX.search(name)
    if match is not None:
        return num_layers - int(match.group(1))
    if "embeddings" in name:
        return num_layers + 1
    return 0


def group_names(num_layers: int) -> list[str]:
    """``["head", "layer.<L-1>", ..., "layer.0", "embeddings"]``: index = group index."""
    layers = [f"layer.{index}" for index in reversed(range(num_layers))]
    return [HEAD_GROUP, *layers, EMBEDDINGS_GROUP]


def num_layers_of(model: nn.Module) -> int:
    config: Any = model.config
    return int(getattr(config, "num_hidden_layers", 1))
