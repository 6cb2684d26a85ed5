"""``dann``: domain-adversarial adaptation to an unlabeled target domain (Ganin & Lempitsky 2015).

Contract:

- The encoder (``AutoModel`` over ``setup.base_model_dir``) pools token states into one feature
  vector per text (the base's own pooling: :func:`worker.training.pooling.resolve_pooling` with
  ``auto``). A linear label head classifies the pooled features of the labeled source examples;
  the same features pass through a gradient-reversal layer (:mod:`worker.training.grl`) into a
  small domain classifier (hidden -> hidden -> 1 logit: source 0, target 1).
- Every step draws one source batch and one target batch (the texts of
  ``setup.aux_texts["target_dataset_id"]``, shuffled and cycled) and minimises
  ``cross_entropy(labels) + bce(domain)``. The reversal scales the domain gradient reaching the
  encoder by ``-lambda``, ``lambda = domain_loss_weight * (2 / (1 + exp(-gamma * p)) - 1)`` with
  ``p`` the share of steps done, so the encoder learns features the domain classifier cannot
  separate while staying useful for the labels.
- AdamW over all three parts (no decay on biases and LayerNorm), warmup then linear decay,
  gradient clipping. Callbacks: ``on_train_begin``, ``on_step_end`` every step (may raise
  ``TrainingCancelled``), ``on_epoch_end`` with the source validation metrics plus
  ``train_loss``, ``domain_loss``, ``domain_accuracy`` (the domain classifier's accuracy over the
  epoch's source and target examples: 0.5 means the domains look alike) and ``lambda``.
- The result is a ``head`` TrainedModel: the label head with its pooling, and the trained
  encoder as ``backbone`` (saved inside the artifact). The domain classifier is discarded.
- Single-label text classification only. No mid-run checkpoints: a released job restarts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, get_linear_schedule_with_warmup

from app.contract.strategies import DannStrategy
from worker.strategies.full import param_groups
from worker.training.data import (
    Examples,
    effective_max_length,
    make_loader,
    move_batch,
    tokenize_examples,
)
from worker.training.device import autocast, make_generator
from worker.training.grl import reversal_weight, reverse_gradient
from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup, evaluate
from worker.training.metrics import loss_fn
from worker.training.pooling import PoolingMode, pool, resolve_pooling
from worker.training.selection import Selector

TARGET_FIELD = "target_dataset_id"


class DannModel(nn.Module):
    """Encoder + pooling, the label head and the domain classifier behind a reversal layer."""

    def __init__(self, encoder: Any, num_labels: int, pooling: PoolingMode) -> None:
        super().__init__()
        hidden = int(encoder.config.hidden_size)
        self.encoder = encoder
        self.pooling = pooling
        self.head = nn.Linear(hidden, num_labels)
        self.domain = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return pool(self.encoder(**inputs), inputs["attention_mask"], self.pooling)

    def domain_logits(self, features: torch.Tensor, lambda_: float) -> torch.Tensor:
        logits: torch.Tensor = self.domain(reverse_gradient(features, lambda_)).squeeze(-1)
        return logits


def _cycle(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    while True:  # a new shuffled pass each time the target texts run out
        for inputs, _ in loader:
            yield inputs


class DomainAdversarial:
    name: str = "dann"
    artifact_kind: ArtifactKind = "head"

    def train(self, setup: TrainingSetup, config: DannStrategy) -> TrainedModel:
        hp, device, tokenizer, callbacks = setup.hp, setup.device, setup.tokenizer, setup.callbacks
        if setup.multilabel or setup.task not in config.supported_tasks:
            raise ValueError(f"dann supports {sorted(config.supported_tasks)}, not {setup.task}")
        target_texts = setup.aux_texts.get(TARGET_FIELD) or []
        if not target_texts:
            raise ValueError("dann needs the target domain's texts (target_dataset_id is empty)")
        pooling = resolve_pooling(setup.base_model_dir, "auto")
        encoder = AutoModel.from_pretrained(
            setup.base_model_dir, use_safetensors=True, dtype=torch.float32
        )
        model = DannModel(encoder, setup.num_labels, pooling).to(device)
        max_length = effective_max_length(tokenizer, hp.max_length, encoder.config)

        def loader(split: Examples, seed: int | None) -> Any:
            data = tokenize_examples(
                split, tokenizer, max_length=max_length, multilabel=False, num_labels=1
            )
            generator = make_generator(seed) if seed is not None else None
            return make_loader(data, tokenizer, batch_size=hp.batch_size, generator=generator)

        train_loader = loader(setup.train, hp.seed)
        val_loader = loader(setup.validation, None)
        unlabeled = Examples(list(target_texts), [0] * len(target_texts))
        target_batches = _cycle(loader(unlabeled, hp.seed + 1))
        optimizer = torch.optim.AdamW(
            param_groups(
                model,
                learning_rate=hp.effective_learning_rate(config),
                weight_decay=hp.weight_decay,
                layerwise_lr_decay=1.0,
                num_layers=int(getattr(encoder.config, "num_hidden_layers", 1)),
            )
        )
        total_steps = hp.epochs * len(train_loader)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, math.ceil(total_steps * hp.warmup_ratio), total_steps
        )
        trainable = [p for p in model.parameters() if p.requires_grad]

        def classify(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            logits: torch.Tensor = model.head(model.features(move_batch(inputs, device)))
            return logits

        selector = Selector(setup.plan)  # no on-disk copy: dann reruns from the start
        callbacks.on_train_begin(total_steps=total_steps, epochs=hp.epochs)
        history: list[dict[str, float]] = []
        step = 0
        lambda_ = 0.0
        for epoch in range(1, hp.epochs + 1):
            model.train()
            sums = {"loss": 0.0, "domain_loss": 0.0, "domain_correct": 0.0, "domain_seen": 0.0}
            for inputs, labels in train_loader:
                lambda_ = reversal_weight(
                    step / total_steps, weight=config.domain_loss_weight, gamma=config.gamma
                )
                target_inputs = move_batch(next(target_batches), device)
                with autocast(device):
                    source = model.features(move_batch(inputs, device))
                    target = model.features(target_inputs)
                    logits = model.head(source)
                    domain_logits = model.domain_logits(torch.cat([source, target]), lambda_)
                domains = torch.cat(
                    [
                        torch.zeros(len(source), device=device),
                        torch.ones(len(target), device=device),
                    ]
                )
                label_loss = loss_fn(
                    logits,
                    labels.to(device),
                    multilabel=False,
                    class_weights=setup.plan.class_weights,
                )
                domain_loss = F.binary_cross_entropy_with_logits(domain_logits.float(), domains)
                loss = label_loss + domain_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, hp.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                correct = ((domain_logits.detach() > 0).float() == domains).sum()
                sums["loss"] += float(label_loss.detach())
                sums["domain_loss"] += float(domain_loss.detach())
                sums["domain_correct"] += float(correct)
                sums["domain_seen"] += float(len(domains))
                callbacks.on_step_end(
                    epoch=epoch, step=step, total_steps=total_steps, loss=float(loss.detach())
                )
            batches = max(len(train_loader), 1)
            metrics = evaluate(
                classify,
                model,
                val_loader,
                multilabel=False,
                device=device,
                label_names=setup.plan.label_names,
            )
            metrics.update(
                {
                    "train_loss": sums["loss"] / batches,
                    "domain_loss": sums["domain_loss"] / batches,
                    "domain_accuracy": sums["domain_correct"] / max(sums["domain_seen"], 1.0),
                    "lambda": lambda_,
                    "epoch": float(epoch),
                    "step": float(step),
                }
            )
            history.append(metrics)
            stop = selector.observe(metrics, model, callbacks, final=epoch == hp.epochs)
            callbacks.on_epoch_end(epoch=epoch, step=step, total_steps=total_steps, metrics=metrics)
            if stop:
                break
        selection = selector.finish(model, callbacks)
        model.eval()
        return TrainedModel(
            kind="head",
            model=model.head,
            tokenizer=tokenizer,
            task=setup.task,
            label_names=setup.label_names,
            base_model_dir=setup.base_model_dir,
            strategy=self.name,
            max_length=max_length,
            metrics=history[selector.selected_index],
            history=history,
            selection=selection,
            pooling=pooling,
            backbone=model.encoder,
        )
