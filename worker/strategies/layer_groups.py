"""Layer groups of an encoder classifier, top down, and the model ``partial`` and
``gradual_unfreeze`` train.

Group 0 is the head (the classifier, the pooler and anything else outside the encoder
layers and the embeddings), group ``k`` for ``1 <= k <= L`` is encoder layer ``L - k`` (so
group 1 is the top layer), group ``L + 1`` the embeddings. Layers are found by name
(``.layer.<i>.`` / ``.layers.<i>.``), as in :func:`worker.strategies.full.layer_depth`.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification

from worker.training.data import effective_max_length, make_loader, tokenize_examples
from worker.training.device import make_generator
from worker.training.loop import TrainingSetup

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
    return int(config.num_hidden_layers)


def no_decay(name: str, model: nn.Module) -> bool:
    """Biases and normalisation weights get no weight decay (as in ``full``)."""
    if name.endswith("bias"):
        return True
    owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    return isinstance(owner, nn.LayerNorm) or "layernorm" in type(owner).__name__.lower()


def load_classifier(setup: TrainingSetup) -> Any:
    """A fresh ``AutoModelForSequenceClassification`` for the job's labels, on its device."""
    return AutoModelForSequenceClassification.from_pretrained(
        setup.base_model_dir,
        use_safetensors=True,
        dtype=torch.float32,
        num_labels=setup.num_labels,
        id2label=dict(enumerate(setup.label_names)),
        label2id={label: index for index, label in enumerate(setup.label_names)},
        problem_type=(
            "multi_label_classification" if setup.multilabel else "single_label_classification"
        ),
        ignore_mismatched_sizes=True,
    ).to(setup.device)


def text_loaders(
    setup: TrainingSetup, model: nn.Module
) -> tuple[DataLoader[Any], DataLoader[Any], int]:
    """Train (seeded shuffle) and validation loaders, and the truncation length used."""
    hp, tokenizer = setup.hp, setup.tokenizer
    max_length = effective_max_length(tokenizer, hp.max_length, model.config)

    def loader(split: Any, shuffle: bool) -> DataLoader[Any]:
        data = tokenize_examples(
            split,
            tokenizer,
            max_length=max_length,
            multilabel=setup.multilabel,
            num_labels=setup.num_labels,
        )
        generator = make_generator(hp.seed) if shuffle else None
        return make_loader(data, tokenizer, batch_size=hp.batch_size, generator=generator)

    return loader(setup.train, True), loader(setup.validation, False), max_length
