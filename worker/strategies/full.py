"""``full``: every weight trains.

AdamW (no weight decay on biases and LayerNorm weights), linear warmup then linear decay,
gradient clipping, and optional layer-wise learning-rate decay: the head, the pooler and the
top encoder layer get the full rate, each layer below gets the rate of the layer above times
``layerwise_lr_decay``, the embeddings one step below the lowest layer.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from app.contract.strategies import FullStrategy
from worker.training.data import (
    effective_max_length,
    make_loader,
    move_batch,
    tokenize_examples,
)
from worker.training.device import make_generator
from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup, fit

_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def layer_depth(name: str, num_layers: int) -> int:
    """How many layers below the top a parameter sits: 0 head/pooler/top layer, L embeddings."""
    match = _LAYER_INDEX.search(name)
    if match is not None:
        return num_layers - 1 - int(match.group(1))
    if "embeddings" in name:
        return num_layers
    return 0


def _no_decay_names(model: nn.Module) -> set[str]:
    names = {name for name, _ in model.named_parameters() if name.endswith("bias")}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) or "layernorm" in type(module).__name__.lower():
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + name for name, _ in module.named_parameters(recurse=False))
    return names


def param_groups(
    model: nn.Module,
    *,
    learning_rate: float,
    weight_decay: float,
    layerwise_lr_decay: float,
    num_layers: int,
) -> list[dict[str, Any]]:
    """AdamW parameter groups, one per (depth, decays?); each has ``lr`` and ``depth``."""
    no_decay = _no_decay_names(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth = layer_depth(name, num_layers)
        decays = name not in no_decay
        group = groups.setdefault(
            (depth, decays),
            {
                "params": [],
                "names": [],
                "depth": depth,
                "lr": learning_rate * layerwise_lr_decay**depth,
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(parameter)
        group["names"].append(name)
    return [groups[key] for key in sorted(groups)]


class FullFineTune:
    name: str = "full"
    artifact_kind: ArtifactKind = "full"

    def train(self, setup: TrainingSetup, config: FullStrategy) -> TrainedModel:
        hp, device, tokenizer = setup.hp, setup.device, setup.tokenizer
        model = AutoModelForSequenceClassification.from_pretrained(
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
        ).to(device)
        max_length = effective_max_length(tokenizer, hp.max_length, model.config)

        def loader(split: Any, shuffle: bool) -> Any:
            data = tokenize_examples(
                split,
                tokenizer,
                max_length=max_length,
                multilabel=setup.multilabel,
                num_labels=setup.num_labels,
            )
            generator = make_generator(hp.seed) if shuffle else None
            return make_loader(data, tokenizer, batch_size=hp.batch_size, generator=generator)

        train_loader = loader(setup.train, True)
        val_loader = loader(setup.validation, False)
        optimizer = torch.optim.AdamW(
            param_groups(
                model,
                learning_rate=hp.effective_learning_rate(config),
                weight_decay=hp.weight_decay,
                layerwise_lr_decay=config.layerwise_lr_decay,
                num_layers=model.config.num_hidden_layers,
            )
        )
        total_steps = hp.epochs * len(train_loader)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, math.ceil(total_steps * hp.warmup_ratio), total_steps
        )

        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            logits: torch.Tensor = model(**move_batch(inputs, device)).logits
            return logits

        result = fit(
            model=model,
            forward=forward,
            train_loader=train_loader,
            val_loader=val_loader,
            optimizer=optimizer,
            scheduler=scheduler,
            epochs=hp.epochs,
            max_grad_norm=hp.max_grad_norm,
            multilabel=setup.multilabel,
            callbacks=setup.callbacks,
            device=device,
            checkpoint=setup.checkpoint,
            plan=setup.plan,
        )
        model.eval()
        return TrainedModel(
            kind="full",
            model=model,
            tokenizer=tokenizer,
            task=setup.task,
            label_names=setup.label_names,
            base_model_dir=setup.base_model_dir,
            strategy=self.name,
            max_length=max_length,
            metrics=result.metrics,
            history=result.history,
            selection=result.selection,
        )
