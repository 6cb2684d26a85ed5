"""``full``: every weight trains.

AdamW (no weight decay on biases and LayerNorm weights), linear warmup then linear decay,
gradient clipping, and optional layer-wise learning-rate decay: the head, the pooler and the
top encoder layer get the full rate, each layer below gets the rate of the layer above times
``layerwise_lr_decay``, the embeddings one step below the lowest layer.
"""

from __future__ import annotations

from torch import nn

from app.contract.strategies import FullStrategy
from worker.strategies.layer_groups import layer_group, num_layers_of
from worker.strategies.toolkit import LrScale, adamw, fine_tune_classifier, load_classifier
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup


def layer_depth(name: str, num_layers: int) -> int:
    """How many layers below the top a parameter sits: 0 head/pooler/top layer, L embeddings."""
    return max(layer_group(name, num_layers) - 1, 0)


def layerwise_decay(model: nn.Module, decay: float) -> LrScale:
    """Each parameter's rate multiplier: ``decay ** depth``, grouped by depth."""
    num_layers = num_layers_of(model)

    def scale(name: str) -> tuple[str, float]:
        depth = layer_depth(name, num_layers)
        return f"depth-{depth}", decay**depth

    return scale


class FullFineTune(Strategy, name="full", artifact_kind="full"):
    def train(self, setup: TrainingSetup, config: FullStrategy) -> TrainedModel:
        model = load_classifier(setup)
        optimizer = adamw(
            model,
            setup,
            lr=setup.hp.effective_learning_rate(config),
            lr_scale=layerwise_decay(model, config.layerwise_lr_decay),
        )
        return fine_tune_classifier(setup, model, optimizer, strategy=self.name)
