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

from torch import nn

from app.contract.strategies import PartialStrategy
from worker.strategies.layer_groups import group_names, layer_group, num_layers_of
from worker.strategies.toolkit import (
    adamw,
    fine_tune_classifier,
    load_classifier,
    parameter_counts,
)
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup


def freeze_lower(model: nn.Module, trainable_layers: int) -> list[str]:
    """Freeze all but the head and the top ``trainable_layers`` layers; the trained groups."""
    num_layers = num_layers_of(model)
    top = min(trainable_layers, num_layers)  # group index of the lowest trained layer
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(layer_group(name, num_layers) <= top)
    return group_names(num_layers)[: top + 1]


class PartialFineTune(Strategy, name="partial", artifact_kind="full"):
    def train(self, setup: TrainingSetup, config: PartialStrategy) -> TrainedModel:
        model = load_classifier(setup)
        trained_groups = freeze_lower(model, config.trainable_layers)
        trainable, total = parameter_counts(model)
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
        optimizer = adamw(model, setup, lr=setup.hp.effective_learning_rate(config))
        return fine_tune_classifier(setup, model, optimizer, strategy=self.name)
