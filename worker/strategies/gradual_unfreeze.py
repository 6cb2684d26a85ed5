"""``gradual_unfreeze``: ULMFiT (Howard & Ruder 2018) on an encoder classifier.

Layer groups, top down: ``head`` (classifier + pooler), ``layer.<L-1>``, ..., ``layer.0``,
``embeddings`` (see :mod:`worker.strategies.layer_groups`). Phase 0 trains the head only;
each ``unfreeze_every`` epochs (``unfreeze_unit="epoch"``) or optimisation steps (``"step"``)
the next group down joins, until every group trains. Phase ``p`` starts at epoch
``1 + p * unfreeze_every`` or after ``p * unfreeze_every`` steps; a frozen group has
``requires_grad=False`` and stays bit-identical.

Discriminative learning rates: group ``k`` (0 = head) gets ``lr / lr_decay_factor**k``.
Every group is in the AdamW optimizer from the start (weight decay off for biases and
LayerNorm weights); AdamW skips a parameter without a gradient, so a frozen group neither
moves nor decays. The schedule scales every group's rate alike: ULMFiT's slanted triangular
(a linear rise from ``1/32`` of the peak over ``cut_frac`` of the steps, then a linear
decay back to ``1/32``) or, with ``slanted_triangular=False``, linear warmup then decay.
Gradient clipping as usual.

Each unfreeze is recorded with ``callbacks.on_event("unfreeze", message, {"group",
"epoch", "step", "trainable_groups"})`` where ``step`` counts the steps done before it.
The artifact is the whole model (``kind: full``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from app.contract.strategies import GradualUnfreezeStrategy
from worker.strategies.layer_groups import group_names, layer_group, num_layers_of
from worker.strategies.toolkit import (
    LrScale,
    adamw,
    fine_tune_classifier,
    load_classifier,
    warmup_schedule,
)
from worker.training.callbacks import TrainingCallbacks
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup

#: ULMFiT's ratio between the peak and the lowest learning rate of the slanted triangle
STLR_RATIO = 32.0


def discriminative_rates(model: nn.Module, decay_factor: float) -> LrScale:
    """Group ``k`` (0 = head) trains at ``lr / decay_factor**k``, grouped by layer group."""
    num_layers = num_layers_of(model)
    names = group_names(num_layers)

    def scale(name: str) -> tuple[str, float]:
        index = layer_group(name, num_layers)
        return names[index], 1.0 / decay_factor**index

    return scale


def slanted_triangular(
    total_steps: int, cut_frac: float, ratio: float = STLR_RATIO
) -> Callable[[int], float]:
    """The multiplier of the peak rate at step ``t`` (ULMFiT eq. 3), for ``LambdaLR``."""
    cut = max(1, math.floor(total_steps * cut_frac))

    def multiplier(step: int) -> float:
        rising = step < cut
        p = step / cut if rising else max(0.0, 1.0 - (step - cut) / max(1, total_steps - cut))
        return (1.0 + p * (ratio - 1.0)) / ratio

    return multiplier


class Unfreezer:
    """The ``on_step_begin`` hook: sets ``requires_grad`` for the phase of (epoch, step)."""

    def __init__(
        self,
        model: nn.Module,
        config: GradualUnfreezeStrategy,
        callbacks: TrainingCallbacks,
    ) -> None:
        num_layers = num_layers_of(model)
        self.names = group_names(num_layers)
        self.params: list[list[nn.Parameter]] = [[] for _ in self.names]
        for name, parameter in model.named_parameters():
            self.params[layer_group(name, num_layers)].append(parameter)
        self.config = config
        self.callbacks = callbacks
        #: groups training now (None until the first step)
        self.trainable: int | None = None

    def phase(self, epoch: int, steps_done: int) -> int:
        elapsed = epoch - 1 if self.config.unfreeze_unit == "epoch" else steps_done
        return elapsed // self.config.unfreeze_every

    def apply(self, trainable_groups: int) -> None:
        """The top ``trainable_groups`` groups require grad, the others not."""
        for index, params in enumerate(self.params):
            for parameter in params:
                parameter.requires_grad_(index < trainable_groups)

    def __call__(self, epoch: int, steps_done: int) -> None:
        wanted = min(self.phase(epoch, steps_done) + 1, len(self.names))
        if wanted == self.trainable:
            return
        self.apply(wanted)
        # the first call sets the phase silently (a resumed run may start past phase 0)
        if self.trainable is not None:
            for index in range(self.trainable, wanted):
                self.callbacks.on_event(
                    "unfreeze",
                    f"unfroze {self.names[index]} at epoch {epoch}, after {steps_done} steps "
                    f"({index + 1}/{len(self.names)} groups train)",
                    {
                        "group": self.names[index],
                        "epoch": epoch,
                        "step": steps_done,
                        "trainable_groups": index + 1,
                    },
                )
        self.trainable = wanted


class GradualUnfreeze(Strategy, name="gradual_unfreeze", artifact_kind="full"):
    def train(self, setup: TrainingSetup, config: GradualUnfreezeStrategy) -> TrainedModel:
        model = load_classifier(setup)
        unfreezer = Unfreezer(model, config, setup.callbacks)
        unfreezer.apply(1)  # phase 0: the head alone trains
        optimizer = adamw(
            model,
            setup,
            lr=setup.hp.effective_learning_rate(config),
            lr_scale=discriminative_rates(model, config.lr_decay_factor),
            include_frozen=True,
        )

        def schedule(total_steps: int) -> LambdaLR:
            if config.slanted_triangular:
                return LambdaLR(optimizer, slanted_triangular(total_steps, config.cut_frac))
            return warmup_schedule(optimizer, setup, total_steps)

        setup.callbacks.on_event(
            "layer_groups",
            f"{len(unfreezer.names)} layer groups, top down: {', '.join(unfreezer.names)}; "
            f"one more every {config.unfreeze_every} {config.unfreeze_unit}(s)",
            {"groups": unfreezer.names, "learning_rates": _group_rates(optimizer)},
        )
        return fine_tune_classifier(
            setup,
            model,
            optimizer,
            strategy=self.name,
            scheduler=schedule,
            on_step_begin=unfreezer,
        )


def _group_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Peak learning rate per layer group (read before a schedule scales it)."""
    return {group["group"]: float(group["lr"]) for group in optimizer.param_groups}
