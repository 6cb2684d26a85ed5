"""``partial``: the embeddings and the lower encoder layers are frozen; the top
``trainable_layers`` layers and the head (classifier + pooler) train.

Contract: every parameter of the embeddings and of encoder layers ``0 .. L - n - 1`` (``n =
trainable_layers``) has ``requires_grad=False`` and is bit-identical after training; the
head and layers ``L - n .. L - 1`` train with AdamW (only trainable parameters are given to
it; no weight decay on biases and LayerNorm weights), linear warmup then linear decay and
gradient clipping. ``n = 0`` trains the head only; ``n >= L`` every layer but the embeddings.
The artifact is the whole model (``kind: full``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from app.contract.strategies import PartialStrategy
from worker.strategies.layer_groups import (
    group_names,
    layer_group,
    load_classifier,
    no_decay,
    num_layers_of,
    text_loaders,
)
from worker.training.data import move_batch
from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup, fit


def freeze_lower(model: nn.Module, trainable_layers: int) -> list[str]:
    """Freeze all but the head and the top ``trainable_layers`` layers; the trained groups."""
    num_layers = num_layers_of(model)
    top = min(trainable_layers, num_layers)  # group index of the lowest trained layer
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(layer_group(name, num_layers) <= top)
    return group_names(num_layers)[: top + 1]


def trainable_param_groups(
    model: nn.Module, *, learning_rate: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups over the parameters that require grad (decayed, not decayed)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decayed = [p for n, p in named if not no_decay(n, model)]
    plain = [p for n, p in named if no_decay(n, model)]
    return [
        {"params": decayed, "lr": learning_rate, "weight_decay": weight_decay},
        {"params": plain, "lr": learning_rate, "weight_decay": 0.0},
    ]


class PartialFineTune:
    name: str = "partial"
    artifact_kind: ArtifactKind = "full"

    def train(self, setup: TrainingSetup, config: PartialStrategy) -> TrainedModel:
        hp, device = setup.hp, setup.device
        model = load_classifier(setup)
        trained_groups = freeze_lower(model, config.trainable_layers)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        setup.callbacks.on_event(
            "frozen",
            f"training {', '.join(trained_groups)} ({trainable}/{total} parameters); "
            "embeddings and lower layers frozen",
            {
                "trainable_groups": trained_groups,
                "trainable_parameters": trainable,
                "total_parameters": total,
            },
        )
        train_loader, val_loader, max_length = text_loaders(setup, model)
        optimizer = torch.optim.AdamW(
            trainable_param_groups(
                model,
                learning_rate=hp.effective_learning_rate(config),
                weight_decay=hp.weight_decay,
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
            tokenizer=setup.tokenizer,
            task=setup.task,
            label_names=setup.label_names,
            base_model_dir=setup.base_model_dir,
            strategy=self.name,
            max_length=max_length,
            metrics=result.metrics,
            history=result.history,
            selection=result.selection,
        )
