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
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from transformers import get_linear_schedule_with_warmup

from app.contract.strategies import GradualUnfreezeStrategy
from worker.strategies.layer_groups import (
    group_names,
    layer_group,
    load_classifier,
    no_decay,
    num_layers_of,
    text_loaders,
)
from worker.training.callbacks import TrainingCallbacks
from worker.training.data import move_batch
from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup, fit

#: ULMFiT's ratio between the peak and the lowest learning rate of the slanted triangle
STLR_RATIO = 32.0


def discriminative_param_groups(
    model: nn.Module, *, learning_rate: float, weight_decay: float, decay_factor: float
) -> list[dict[str, Any]]:
    """AdamW groups, one per (layer group, decays?), top down; each has ``group``, ``lr``."""
    num_layers = num_layers_of(model)
    names = group_names(num_layers)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        index = layer_group(name, num_layers)
        decays = not no_decay(name, model)
        group = groups.setdefault(
            (index, not decays),
            {
                "params": [],
                "names": [],
                "group": names[index],
                "lr": learning_rate / decay_factor**index,
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(parameter)
        group["names"].append(name)
    return [groups[key] for key in sorted(groups)]


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


class GradualUnfreeze:
    name: str = "gradual_unfreeze"
    artifact_kind: ArtifactKind = "full"

    def train(self, setup: TrainingSetup, config: GradualUnfreezeStrategy) -> TrainedModel:
        hp, device = setup.hp, setup.device
        model = load_classifier(setup)
        unfreezer = Unfreezer(model, config, setup.callbacks)
        unfreezer.apply(1)  # phase 0: the head alone trains
        train_loader, val_loader, max_length = text_loaders(setup, model)
        optimizer = torch.optim.AdamW(
            discriminative_param_groups(
                model,
                learning_rate=hp.effective_learning_rate(config),
                weight_decay=hp.weight_decay,
                decay_factor=config.lr_decay_factor,
            )
        )
        total_steps = hp.epochs * len(train_loader)
        scheduler: LRScheduler
        if config.slanted_triangular:
            scheduler = LambdaLR(optimizer, slanted_triangular(total_steps, config.cut_frac))
        else:
            scheduler = get_linear_schedule_with_warmup(
                optimizer, math.ceil(total_steps * hp.warmup_ratio), total_steps
            )
        setup.callbacks.on_event(
            "layer_groups",
            f"{len(unfreezer.names)} layer groups, top down: {', '.join(unfreezer.names)}; "
            f"one more every {config.unfreeze_every} {config.unfreeze_unit}(s)",
            {"groups": unfreezer.names, "learning_rates": _group_rates(optimizer)},
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
            on_step_begin=unfreezer,
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


def _group_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Peak learning rate per layer group (``initial_lr``: before the schedule scales it)."""
    return {group["group"]: float(group["initial_lr"]) for group in optimizer.param_groups}
