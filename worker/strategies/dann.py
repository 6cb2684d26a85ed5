"""``dann``: domain-adversarial adaptation to an unlabeled target domain (Ganin & Lempitsky 2015).

Contract:

- The encoder (``AutoModel`` over ``setup.base_model_dir``) pools token states into one feature
  vector per text (the base's own pooling: :func:`worker.core.pooling.resolve_pooling` with
  ``auto``). A linear label head classifies the pooled features of the labeled source examples;
  the same features pass through a gradient-reversal layer (:mod:`worker.training.grl`) into a
  small domain classifier (hidden -> hidden -> 1 logit: source 0, target 1).
- Every step draws one source batch and one target batch (the texts of
  ``setup.aux_texts["target_dataset_id"]``, shuffled and cycled) and minimises
  ``cross_entropy(labels) + bce(domain)``. The reversal scales the domain gradient reaching the
  encoder by ``-lambda``, ``lambda = domain_loss_weight * (2 / (1 + exp(-gamma * p)) - 1)`` with
  ``p`` the share of steps done, so the encoder learns features the domain classifier cannot
  separate while staying useful for the labels.
- The one loop (:func:`worker.training.loop.fit`) runs it through a ``compute_loss`` hook, so
  it has the loop's checkpoints, step evaluations, selection and cancel. AdamW over all three
  parts (no decay on biases and LayerNorm), warmup then linear decay, gradient clipping.
  Each evaluation has the source validation metrics plus ``train_loss`` (label + domain
  loss), ``label_loss``, ``domain_loss``, ``domain_accuracy`` (the domain classifier's
  accuracy over the epoch's batches: 0.5 means the domains look alike) and ``lambda`` (the
  epoch's mean reversal weight), each a mean over the epoch's steps.
- The result is a ``head`` TrainedModel: the label head with its pooling, and the trained
  encoder as ``backbone`` (saved inside the artifact). The domain classifier is discarded.
- Single-label text classification only. A resumed run continues from its checkpoint; its
  target batches start a new pass (the target stream's position is not saved).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from app.contract.strategies import DannStrategy
from worker.core.data import Examples, cycle_passes, move_batch
from worker.core.long_text import pooled_states
from worker.core.models import load_encoder
from worker.core.pooling import PoolingMode, resolve_pooling
from worker.strategies.toolkit import (
    adamw,
    max_length_for,
    text_loader,
    trained_model,
    warmup_schedule,
)
from worker.training.grl import reversal_weight, reverse_gradient
from worker.training.loop import StepLoss, fit
from worker.training.metrics import loss_fn
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup

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
        return pooled_states(self.encoder, inputs, self.pooling)

    def domain_logits(self, features: torch.Tensor, lambda_: float) -> torch.Tensor:
        logits: torch.Tensor = self.domain(reverse_gradient(features, lambda_)).squeeze(-1)
        return logits


class DomainAdversarial(Strategy, name="dann", artifact_kind="head"):
    def train(self, setup: TrainingSetup, config: DannStrategy) -> TrainedModel:
        hp, device = setup.hp, setup.device
        if setup.multilabel or setup.task not in config.supported_tasks:
            raise ValueError(f"dann supports {sorted(config.supported_tasks)}, not {setup.task}")
        target_texts = setup.aux_texts.get(TARGET_FIELD) or []
        if not target_texts:
            raise ValueError("dann needs the target domain's texts (target_dataset_id is empty)")
        pooling = resolve_pooling(setup.base_model_dir, "auto")
        encoder = load_encoder(setup.base_model_dir)
        model = DannModel(encoder, setup.num_labels, pooling).to(device)
        max_length = max_length_for(setup, encoder.config)
        train_loader = text_loader(setup, setup.train, max_length=max_length, seed=hp.seed)
        val_loader = text_loader(setup, setup.validation, max_length=max_length)
        unlabeled = Examples(list(target_texts), [0] * len(target_texts))
        target = text_loader(
            setup, unlabeled, max_length=max_length, seed=hp.seed + 1, labels=False
        )
        target_batches = cycle_passes(target)
        total_steps = hp.epochs * len(train_loader)

        def classify(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            logits: torch.Tensor = model.head(model.features(move_batch(inputs, device)))
            return logits

        def compute_loss(
            batch: tuple[dict[str, torch.Tensor], torch.Tensor], done: int
        ) -> StepLoss:
            inputs, labels = batch
            lambda_ = reversal_weight(
                done / total_steps, weight=config.domain_loss_weight, gamma=config.gamma
            )
            source = model.features(move_batch(inputs, device))
            target = model.features(move_batch(next(target_batches)[0], device))
            domain_logits = model.domain_logits(torch.cat([source, target]), lambda_).float()
            domains = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(device)
            label_loss = loss_fn(
                model.head(source),
                labels.to(device),
                multilabel=False,
                class_weights=setup.plan.class_weights,
            )
            domain_loss = F.binary_cross_entropy_with_logits(domain_logits, domains)
            correct = ((domain_logits.detach() > 0).float() == domains).float().mean()
            return StepLoss(
                label_loss + domain_loss,
                {
                    "label_loss": float(label_loss.detach()),
                    "domain_loss": float(domain_loss.detach()),
                    "domain_accuracy": float(correct),
                    "lambda": lambda_,
                },
            )

        optimizer = adamw(model, setup, lr=hp.effective_learning_rate(config))
        result = fit(
            setup,
            model=model,
            forward=classify,
            train_loader=train_loader,
            val_loader=val_loader,
            optimizer=optimizer,
            scheduler=warmup_schedule(optimizer, setup, total_steps),
            compute_loss=compute_loss,
        )
        model.eval()
        return trained_model(
            setup,
            result,
            strategy=self.name,
            kind="head",
            model=model.head,
            max_length=max_length,
            pooling=pooling,
            backbone=model.encoder,
        )
