"""The one training loop every strategy runs: :func:`fit`.

Readable top to bottom: per epoch, per batch, the loss under autocast (``compute_loss``, by
default the classification loss of ``forward``), backward, clip, step, schedule, progress;
after each epoch (and every ``eval_every_steps``) validation metrics, selection and early
stopping; checkpoints throughout. A callback may raise ``TrainingCancelled`` (propagates) or
``TrainingReleased`` (a checkpoint is saved first); CUDA out-of-memory errors propagate.

A *phase* (``phase="mlm"``, ``"contrastive_pairs"``, ``"domain_adversarial"``...) is a run
without validation before or instead of the main one: its progress goes to
``on_phase_progress``, its checkpoints to a folder of its own, and a finished phase is saved
whole, so that a resumed job skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from worker.core.device import autocast
from worker.training.callbacks import TrainingCallbacks, TrainingReleased
from worker.training.checkpoint import Checkpointer, ResumeState
from worker.training.metrics import loss_fn, validation_metrics
from worker.training.recipe import TrainingSetup
from worker.training.selection import Selector

#: maps whatever a loader yields as inputs (a dict of tensors, a feature tensor) to logits
Forward = Callable[[Any], torch.Tensor]
#: ``hook(epoch, steps_done)`` called by :func:`fit` before each optimisation step
StepHook = Callable[[int, int], None]


@dataclass
class StepLoss:
    """What a ``compute_loss`` hook returns when it has more to say than the loss."""

    loss: torch.Tensor
    #: per-step figures, averaged over the epoch into its evaluation (dann's ``domain_loss``)
    extras: dict[str, float] = field(default_factory=dict)


#: ``compute_loss(batch, steps_done)``: the training loss of one batch from ``train_loader``
ComputeLoss = Callable[[Any, int], "torch.Tensor | StepLoss"]


class Batches(Iterable[Any], Sized, Protocol):
    """A loader: sized and iterable (a ``DataLoader``, or :class:`worker.core.data.Cycled`)."""


@dataclass
class FitResult:
    """What :func:`fit` returns: every evaluation, and which one the model now holds."""

    history: list[dict[str, float]]
    selection: dict[str, Any]
    #: the served evaluation's metrics (train_loss and epoch included)
    metrics: dict[str, float]
    #: the loss of every step this attempt ran (a resumed run: only those after the resume)
    step_losses: list[float] = field(default_factory=list)


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
    setup: TrainingSetup,
    *,
    model: nn.Module,
    train_loader: Batches,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    forward: Forward | None = None,
    val_loader: DataLoader[Any] | None = None,
    compute_loss: ComputeLoss | None = None,
    epochs: int | None = None,
    on_step_begin: StepHook | None = None,
    phase: str | None = None,
) -> FitResult:
    """Train ``model`` (its trainable part) for up to ``epochs`` (default ``setup.hp.epochs``).

    The loss of a batch is ``compute_loss(batch, steps_done)``, by default the classification
    loss (weighted by ``setup.plan.class_weights``) of ``forward(inputs)`` against the labels
    of an ``(inputs, labels)`` batch. With a ``val_loader``, the model is evaluated with
    ``forward`` at every epoch end (and every ``plan.eval_every_steps`` steps); a
    :class:`Selector` keeps the best evaluation's weights by ``plan.metric``, stops after
    ``plan.patience`` evaluations without improvement, and at the end leaves the selected
    weights in ``model``. Without one (a phase), the last weights stay.

    With ``setup.checkpoint``, the loop resumes from its latest checkpoint (weights,
    optimizer, scheduler, RNG states, the data order and position, the evaluations so far
    and the best weights) and saves one every ``checkpoint.every_steps`` steps, at each epoch
    end, and when a callback raises :class:`TrainingReleased`.

    ``on_step_begin(epoch, steps_done)``, when given, runs before each step (also the first
    after a resume) and may change which parameters require grad (gradual unfreezing); the
    set clipped by ``hp.max_grad_norm`` is re-read after it.
    """
    if val_loader is not None and forward is None:
        raise ValueError("fit needs `forward` to evaluate on a validation loader")
    if phase is not None and val_loader is not None:
        raise ValueError("a phase has no validation: it runs before or instead of training")
    callbacks, device, plan = setup.callbacks, setup.device, setup.plan
    loss_of = compute_loss or _classification_loss(setup, forward)
    epochs = setup.hp.epochs if epochs is None else epochs
    checkpoint = setup.checkpoint
    if checkpoint is not None and phase is not None:
        checkpoint = checkpoint.child(f"phase-{phase}")
    steps_per_epoch = len(train_loader)
    total_steps = epochs * steps_per_epoch
    order = getattr(train_loader, "generator", None)  # the shuffling generator, if any
    selector = Selector(plan, checkpoint.directory if checkpoint is not None else None)
    resume = _resume(checkpoint, model, optimizer, scheduler, callbacks)
    step = resume.step if resume else 0
    if phase is None:
        callbacks.on_train_begin(total_steps=total_steps, epochs=epochs)
    else:
        callbacks.on_phase_progress(phase=phase, done=step, total=total_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    history: list[dict[str, float]] = list(resume.history) if resume else []
    selector.replay(history)
    step_losses: list[float] = []
    extras: dict[str, float] = {}

    def evaluation(epoch: float, loss_sum: float, batches: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if val_loader is not None and forward is not None:
            metrics = evaluate(
                forward,
                model,
                val_loader,
                multilabel=setup.multilabel,
                device=device,
                label_names=plan.label_names,
            )
        metrics["train_loss"] = loss_sum / max(batches, 1)
        metrics.update({name: total / max(batches, 1) for name, total in extras.items()})
        metrics["epoch"] = round(epoch, 4)
        metrics["step"] = float(step)
        history.append(metrics)
        return metrics

    def save(state: ResumeState) -> None:
        if checkpoint is not None:
            checkpoint.save(model=model, optimizer=optimizer, scheduler=scheduler, state=state)

    stop = False
    for epoch in range(resume.epoch if resume else 1, epochs + 1):
        skip = resume.batch if resume is not None and epoch == resume.epoch else 0
        saved_order = resume.epoch_generator_state if resume and epoch == resume.epoch else None
        if order is not None and saved_order is not None:
            order.set_state(saved_order)
        epoch_order = order.get_state() if order is not None else None
        train_mode(model)
        loss_sum, batches = (resume.loss_sum, skip) if skip and resume else (0.0, 0)
        extras.clear()
        for index, batch in enumerate(train_loader):
            if index < skip:
                continue  # done before the interruption; same order, so the same batches
            if on_step_begin is not None:
                on_step_begin(epoch, step)
                trainable = [p for p in model.parameters() if p.requires_grad]
                train_mode(model)
            with autocast(device):
                outcome = loss_of(batch, step)
            loss = outcome.loss if isinstance(outcome, StepLoss) else outcome
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, setup.hp.max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            loss_value = float(loss.detach())
            step_losses.append(loss_value)
            loss_sum, batches = loss_sum + loss_value, batches + 1
            if isinstance(outcome, StepLoss):
                for name, value in outcome.extras.items():
                    extras[name] = extras.get(name, 0.0) + value
            last_batch = index + 1 == steps_per_epoch
            every = plan.eval_every_steps
            if phase is None and every is not None and step % every == 0 and not last_batch:
                metrics = evaluation(epoch - 1 + (index + 1) / steps_per_epoch, loss_sum, batches)
                callbacks.on_evaluation(epoch=metrics["epoch"], step=step, metrics=metrics)
                stop = selector.observe(metrics, model, callbacks)
                train_mode(model)
            state = ResumeState(epoch, step, index + 1, history, epoch_order, loss_sum)
            try:
                if phase is None:
                    callbacks.on_step_end(
                        epoch=epoch, step=step, total_steps=total_steps, loss=loss_value
                    )
                else:
                    callbacks.on_phase_progress(phase=phase, done=step, total=total_steps)
            except TrainingReleased:
                save(state)
                raise
            if stop:
                break
            if checkpoint is not None and checkpoint.due(step) and not last_batch:
                save(state)
        if not stop:
            metrics = evaluation(float(epoch), loss_sum, batches)
            next_order = order.get_state() if order is not None else None
            if phase is not None:
                # a phase's last checkpoint is its result: a resumed job skips the phase
                save(ResumeState(epoch + 1, step, 0, history, next_order, 0.0))
                continue
            # observed before the checkpoint: it saves the best weights a resume will need
            stop = selector.observe(metrics, model, callbacks, final=epoch == epochs)
            if epoch < epochs and not stop:
                save(ResumeState(epoch + 1, step, 0, history, next_order, 0.0))
            callbacks.on_epoch_end(epoch=epoch, step=step, total_steps=total_steps, metrics=metrics)
        if stop:
            break
    if phase is not None:
        return FitResult(history, {}, dict(history[-1]) if history else {}, step_losses)
    selection = selector.finish(model, callbacks)
    selected = history[selector.selected_index] if history else {}
    return FitResult(history, selection, dict(selected), step_losses)


def train_mode(model: nn.Module) -> None:
    """``model.train()``, except that a batch-norm layer whose weights are all frozen stays in
    eval mode: frozen means frozen, its running statistics included."""
    model.train()
    for module in model.modules():
        frozen = not any(p.requires_grad for p in module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and frozen:
            module.eval()


def _classification_loss(setup: TrainingSetup, forward: Forward | None) -> ComputeLoss:
    """The default ``compute_loss``: (weighted) classification loss of ``forward(inputs)``."""
    if forward is None:
        raise ValueError("fit needs `forward` or `compute_loss`")

    def compute(batch: tuple[Any, torch.Tensor], steps_done: int) -> torch.Tensor:
        inputs, labels = batch
        return loss_fn(
            forward(inputs),
            labels.to(setup.device),
            multilabel=setup.multilabel,
            class_weights=setup.plan.class_weights,
        )

    return compute


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
