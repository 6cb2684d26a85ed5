"""The training loop: ``prepare_setup`` sets up, a strategy prepares, ``fit`` trains.

``worker.strategies.registry.train_model`` ties them together (it picks the strategy by
name); this module imports no strategy, so strategies can import it without a cycle.

``fit`` is the one loop every strategy runs, readable top to bottom: per epoch, per batch,
forward under autocast, loss, backward, clip, step, schedule, ``on_step_end``; after each
epoch, validation metrics and ``on_epoch_end``. A callback may raise ``TrainingCancelled``;
CUDA out-of-memory errors propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import AnyStrategy
from worker.training.callbacks import TrainingCallbacks, TrainingReleased
from worker.training.checkpoint import Checkpointer, ResumeState
from worker.training.data import MULTILABEL_TASK, Examples, validate_examples
from worker.training.device import autocast, seed_everything, select_device
from worker.training.metrics import class_weight_tensor, loss_fn, validation_metrics
from worker.training.selection import DEFAULT_PLAN, EvalPlan, Selector

if TYPE_CHECKING:
    from worker.features import FeatureCache

ArtifactKind = Literal["full", "head", "lora"]
#: maps whatever a loader yields as inputs (a dict of tensors, a feature tensor) to logits
Forward = Callable[[Any], torch.Tensor]
#: ``hook(epoch, steps_done)`` called by :func:`fit` before each optimisation step
StepHook = Callable[[int, int], None]


@dataclass
class TrainingSetup:
    """Everything a strategy needs, resolved once by :func:`prepare_setup`."""

    base_model_dir: Path
    task: str
    label_names: list[str]
    train: Examples
    validation: Examples
    hp: Hyperparameters
    callbacks: TrainingCallbacks
    device: torch.device
    tokenizer: Any
    #: texts of the other datasets a strategy reads, by config field (e.g. ``target_dataset_id``)
    aux_texts: dict[str, list[str]] = field(default_factory=dict)
    #: where the job's checkpoints go (None: no checkpoints, e.g. in tests and benchmarks)
    checkpoint: Checkpointer | None = None
    #: selection metric, early stopping, step evaluations and loss weights for ``fit``
    plan: EvalPlan = DEFAULT_PLAN
    #: pooled features reused across jobs (linear_probe, contrastive's head); None: no cache
    feature_cache: FeatureCache | None = None

    @property
    def multilabel(self) -> bool:
        return self.task == MULTILABEL_TASK

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@dataclass
class FitResult:
    """What :func:`fit` returns: every evaluation, and which one the model now holds."""

    history: list[dict[str, float]]
    selection: dict[str, Any]
    #: the served evaluation's metrics (train_loss and epoch included)
    metrics: dict[str, float]


@dataclass
class TrainedModel:
    """What the artifact writer needs, plus the final metrics."""

    kind: ArtifactKind
    #: ``full``: the AutoModelForSequenceClassification; ``head``: the nn.Linear head;
    #: ``lora``: the unmerged ``peft.PeftModel`` (adapters + trained head over the base)
    model: nn.Module
    tokenizer: Any
    task: str
    label_names: list[str]
    base_model_dir: Path
    strategy: str
    #: truncation length used in training (already capped by tokenizer and model)
    max_length: int
    #: the served (selected) evaluation's metrics
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    #: which evaluation was served and what the last one scored (:meth:`Selector.finish`)
    selection: dict[str, Any] | None = None
    #: ``head`` only: how token states were pooled into the head's input
    pooling: str | None = None
    #: ``head`` and ``lora``: an encoder changed by training (contrastive, dapt), saved inside
    #: the artifact under ``encoder/``; None means the head sits on the unchanged base
    backbone: nn.Module | None = None


def prepare_setup(
    *,
    base_model_dir: Path,
    task: str,
    label_names: list[str],
    train: Examples,
    validation: Examples,
    strategy: AnyStrategy,
    hp: Hyperparameters,
    callbacks: TrainingCallbacks,
    device: torch.device | None = None,
    aux_texts: dict[str, list[str]] | None = None,
    checkpoint: Checkpointer | None = None,
    feature_cache: FeatureCache | None = None,
) -> TrainingSetup:
    """Check the inputs, seed, and resolve what ``strategy`` needs to train (the tokenizer, the
    device, the evaluation plan); the caller hands the setup to the strategy."""
    if task not in strategy.supported_tasks:
        raise ValueError(f"strategy {strategy.name!r} does not support task {task!r}")
    if len(label_names) < 2 and task != MULTILABEL_TASK:
        raise ValueError("a classification task needs at least two labels")
    validate_examples(train, task=task, num_labels=len(label_names), split="train")
    validate_examples(validation, task=task, num_labels=len(label_names), split="validation")
    if len(train) == 0:
        raise ValueError("the training split is empty")
    seed_everything(hp.seed)
    plan = EvalPlan.from_hyperparameters(
        hp,
        label_names=list(label_names),
        class_weights=class_weight_tensor(
            hp.class_weights,
            train,
            label_names=list(label_names),
            multilabel=task == MULTILABEL_TASK,
        ),
    )
    return TrainingSetup(
        base_model_dir=Path(base_model_dir),
        task=task,
        label_names=list(label_names),
        train=train,
        validation=validation,
        hp=hp,
        callbacks=callbacks,
        device=select_device(device),
        tokenizer=AutoTokenizer.from_pretrained(base_model_dir),
        aux_texts=dict(aux_texts or {}),
        checkpoint=checkpoint,
        plan=plan,
        feature_cache=feature_cache,
    )


def evaluate(
    forward: Forward,
    model: nn.Module,
    loader: DataLoader[Any],
    *,
    multilabel: bool,
    device: torch.device,
    label_names: tuple[str, ...] = (),
) -> dict[str, float]:
    """Validation metrics over ``loader`` (eval mode, inference mode)."""
    model.eval()
    all_logits: list[torch.Tensor] = []
    all_labels: list[torch.Tensor] = []
    with torch.inference_mode(), autocast(device):
        for inputs, labels in loader:
            all_logits.append(forward(inputs).float().cpu())
            all_labels.append(labels)
    if not all_labels:
        return {}
    return validation_metrics(
        torch.cat(all_logits), torch.cat(all_labels), multilabel=multilabel, label_names=label_names
    )


def fit(
    *,
    model: nn.Module,
    forward: Forward,
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epochs: int,
    max_grad_norm: float | None,
    multilabel: bool,
    callbacks: TrainingCallbacks,
    device: torch.device,
    checkpoint: Checkpointer | None = None,
    on_step_begin: StepHook | None = None,
    plan: EvalPlan = DEFAULT_PLAN,
) -> FitResult:
    """Train ``model`` (the trainable part) for up to ``epochs``; see :class:`FitResult`.

    The model is evaluated at every epoch end (and every ``plan.eval_every_steps`` steps);
    a :class:`Selector` keeps the best evaluation's weights by ``plan.metric``, stops after
    ``plan.patience`` evaluations without improvement, and at the end leaves the selected
    weights in ``model``. The training loss is weighted by ``plan.class_weights``.

    With a ``checkpoint``, the loop resumes from its latest checkpoint (weights, optimizer,
    scheduler, RNG states, the data order and position, the evaluations so far and the best
    weights) and saves one every ``checkpoint.every_steps`` steps, at each epoch end, and when
    a callback raises :class:`TrainingReleased`.

    ``on_step_begin(epoch, steps_done)``, when given, runs before each step (also the first
    after a resume) and may change which parameters require grad (gradual unfreezing); the
    set clipped by ``max_grad_norm`` is re-read after it.
    """
    steps_per_epoch = len(train_loader)
    total_steps = epochs * steps_per_epoch
    order = getattr(train_loader, "generator", None)  # the shuffling generator, if any
    selector = Selector(plan, checkpoint.directory if checkpoint is not None else None)
    resume = _resume(checkpoint, model, optimizer, scheduler, callbacks)
    callbacks.on_train_begin(total_steps=total_steps, epochs=epochs)
    trainable = [p for p in model.parameters() if p.requires_grad]
    history: list[dict[str, float]] = list(resume.history) if resume else []
    selector.replay(history)
    step = resume.step if resume else 0

    def evaluation(epoch: float, loss_sum: float, batches: int) -> dict[str, float]:
        metrics = evaluate(
            forward,
            model,
            val_loader,
            multilabel=multilabel,
            device=device,
            label_names=plan.label_names,
        )
        metrics["train_loss"] = loss_sum / max(batches, 1)
        metrics["epoch"] = round(epoch, 4)
        metrics["step"] = float(step)
        history.append(metrics)
        return metrics

    stop = False
    for epoch in range(resume.epoch if resume else 1, epochs + 1):
        skip = resume.batch if resume is not None and epoch == resume.epoch else 0
        saved_order = resume.epoch_generator_state if resume and epoch == resume.epoch else None
        if order is not None and saved_order is not None:
            order.set_state(saved_order)
        epoch_order = order.get_state() if order is not None else None
        model.train()
        loss_sum, batches = (resume.loss_sum, skip) if skip and resume else (0.0, 0)
        for index, (inputs, labels) in enumerate(train_loader):
            if index < skip:
                continue  # done before the interruption; same order, so the same batches
            if on_step_begin is not None:
                on_step_begin(epoch, step)
                trainable = [p for p in model.parameters() if p.requires_grad]
            with autocast(device):
                logits = forward(inputs)
            loss = loss_fn(
                logits, labels.to(device), multilabel=multilabel, class_weights=plan.class_weights
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            loss_value = float(loss.detach())
            loss_sum, batches = loss_sum + loss_value, batches + 1
            last_batch = index + 1 == steps_per_epoch
            every = plan.eval_every_steps
            if every is not None and step % every == 0 and not last_batch:
                metrics = evaluation(epoch - 1 + (index + 1) / steps_per_epoch, loss_sum, batches)
                callbacks.on_evaluation(epoch=metrics["epoch"], step=step, metrics=metrics)
                stop = selector.observe(metrics, model, callbacks)
                model.train()
            state = ResumeState(epoch, step, index + 1, history, epoch_order, loss_sum)
            try:
                callbacks.on_step_end(
                    epoch=epoch, step=step, total_steps=total_steps, loss=loss_value
                )
            except TrainingReleased:
                if checkpoint is not None:
                    checkpoint.save(
                        model=model, optimizer=optimizer, scheduler=scheduler, state=state
                    )
                raise
            if stop:
                break
            if checkpoint is not None and checkpoint.due(step) and not last_batch:
                checkpoint.save(model=model, optimizer=optimizer, scheduler=scheduler, state=state)
        if not stop:
            metrics = evaluation(float(epoch), loss_sum, batches)
            # observed before the checkpoint: it saves the best weights a resume will need
            stop = selector.observe(metrics, model, callbacks, final=epoch == epochs)
            if checkpoint is not None and epoch < epochs and not stop:
                next_order = order.get_state() if order is not None else None
                checkpoint.save(
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    state=ResumeState(epoch + 1, step, 0, history, next_order, 0.0),
                )
            callbacks.on_epoch_end(epoch=epoch, step=step, total_steps=total_steps, metrics=metrics)
        if stop:
            break
    selection = selector.finish(model, callbacks)
    selected = history[selector.selected_index] if history else {}
    return FitResult(history=history, selection=selection, metrics=dict(selected))


def _resume(
    checkpoint: Checkpointer | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    callbacks: TrainingCallbacks,
) -> ResumeState | None:
    latest = checkpoint.latest() if checkpoint is not None else None
    if checkpoint is None or latest is None:
        return None
    resume = checkpoint.restore(latest, model=model, optimizer=optimizer, scheduler=scheduler)
    callbacks.on_event(
        "resumed",
        f"Resumed from the checkpoint at step {resume.step} (epoch {resume.epoch}, "
        f"batch {resume.batch}).",
        {"step": resume.step, "epoch": resume.epoch, "batch": resume.batch},
    )
    return resume
