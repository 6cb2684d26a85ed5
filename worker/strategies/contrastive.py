"""``contrastive``: SetFit-style few-shot -- contrastive pair tuning of the encoder, then a head.

Contract (``text-classification`` only):

1. **Pairs.** :func:`worker.training.pairs.sample_pairs` draws at most ``num_pairs`` distinct
   pairs of training examples, half positive (same label) and half negative, seeded by
   ``hp.seed``; never all O(n^2) pairs. An event ``pairs_sampled`` records the counts.
2. **Encoder tuning.** The base encoder (``AutoModel``, pooled as
   ``resolve_pooling(base, "auto")`` says: mean for sentence-transformers directories, else
   [CLS]) trains on the pairs for ``pair_epochs`` passes with SetFit's ``CosineSimilarityLoss``:
   the MSE between ``cos(u, v)`` of the two pooled embeddings and the pair's target (1 or 0).
   AdamW at ``pair_learning_rate`` (no decay on biases and LayerNorm), linear warmup
   (``hp.warmup_ratio``) then decay, clipping at ``hp.max_grad_norm``, ``hp.batch_size`` pairs
   per step in a seeded order. Progress goes to ``on_phase_progress(phase="contrastive_pairs")``
   after every step (it may raise ``TrainingCancelled``, which propagates); an event
   ``encoder_tuned`` reports the first and last epoch's mean loss.
3. **Head.** The tuned encoder is frozen; each example's feature vector is computed once
   (``phase="extracting_features"``; through the job's feature cache when it has one, in the
   namespace of the tuned weights' hash) and ``nn.Linear(hidden, num_labels)`` trains on them
   with :func:`worker.training.loop.fit` for ``hp.epochs`` at ``hp.effective_learning_rate``
   (default 1e-2), exactly as ``linear_probe`` does.

The result is a ``head`` :class:`TrainedModel` whose ``backbone`` is the tuned encoder: the
artifact carries it under ``encoder/`` and is served as encoder + pooling + head. On resume
after a release the pair phase runs again from the base (same seed, same pairs); ``fit`` then
resumes the head from its checkpoint.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoModel, get_linear_schedule_with_warmup

from app.contract.strategies import ContrastiveStrategy
from worker.features import Featurizer
from worker.strategies.full import param_groups
from worker.training.callbacks import TrainingCallbacks
from worker.training.data import (
    TokenizedExamples,
    effective_max_length,
    label_tensor,
    move_batch,
    tokenize_examples,
)
from worker.training.device import autocast, make_generator
from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup, fit
from worker.training.pairs import Pair, sample_pairs
from worker.training.pooling import PoolingMode, pool, resolve_pooling

PAIR_PHASE = "contrastive_pairs"


def pair_loader(
    pairs: list[Pair], data: TokenizedExamples, tokenizer: Any, *, batch_size: int, seed: int
) -> DataLoader[Any]:
    """Batches of ``(inputs, targets)``: the first texts of ``B`` pairs, then their second
    texts, padded together (``2B`` rows), and the ``B`` cosine targets; seeded order."""

    def collate(batch: list[Pair]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        rows = [data[pair.first][0] for pair in batch] + [data[pair.second][0] for pair in batch]
        padded = tokenizer.pad(rows, padding="longest", return_tensors="pt")
        targets = torch.tensor([pair.target for pair in batch], dtype=torch.float32)
        return dict(padded), targets

    return DataLoader(
        pairs,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=True,
        generator=make_generator(seed),
        collate_fn=collate,
    )


def cosine_similarity_loss(
    encoder: nn.Module,
    inputs: dict[str, torch.Tensor],
    targets: torch.Tensor,
    pooling: PoolingMode,
) -> torch.Tensor:
    """SetFit's ``CosineSimilarityLoss``: MSE between cos(u, v) and the pair targets."""
    outputs = encoder(**inputs)
    embeddings = pool(outputs, inputs["attention_mask"], pooling).float()
    first, second = embeddings.chunk(2)
    return F.mse_loss(F.cosine_similarity(first, second), targets)


def tune_encoder(
    encoder: nn.Module,
    loader: DataLoader[Any],
    *,
    pooling: PoolingMode,
    config: ContrastiveStrategy,
    weight_decay: float,
    warmup_ratio: float,
    max_grad_norm: float | None,
    callbacks: TrainingCallbacks,
    device: torch.device,
) -> list[float]:
    """Train ``encoder`` on the pairs of ``loader``; returns the mean loss of each epoch."""
    optimizer = torch.optim.AdamW(
        param_groups(
            encoder,
            learning_rate=config.pair_learning_rate,
            weight_decay=weight_decay,
            layerwise_lr_decay=1.0,
            num_layers=int(getattr(encoder.config, "num_hidden_layers", 1)),
        )
    )
    total = config.pair_epochs * len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(total * warmup_ratio), total)
    callbacks.on_phase_progress(phase=PAIR_PHASE, done=0, total=total)
    epoch_losses: list[float] = []
    done = 0
    for _ in range(config.pair_epochs):
        encoder.train()
        loss_sum = 0.0
        for inputs, targets in loader:
            with autocast(device):
                loss = cosine_similarity_loss(
                    encoder, move_batch(inputs, device), targets.to(device), pooling
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(encoder.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach())
            done += 1
            callbacks.on_phase_progress(phase=PAIR_PHASE, done=done, total=total)
        epoch_losses.append(loss_sum / max(len(loader), 1))
    encoder.eval()
    return epoch_losses


class Contrastive:
    name: str = "contrastive"
    artifact_kind: ArtifactKind = "head"

    def train(self, setup: TrainingSetup, config: ContrastiveStrategy) -> TrainedModel:
        hp, device, tokenizer, callbacks = setup.hp, setup.device, setup.tokenizer, setup.callbacks
        pooling = resolve_pooling(setup.base_model_dir, "auto")
        encoder = AutoModel.from_pretrained(
            setup.base_model_dir, use_safetensors=True, dtype=torch.float32
        ).to(device)
        max_length = effective_max_length(tokenizer, hp.max_length, encoder.config)

        def tokenized(split: Any) -> TokenizedExamples:
            return tokenize_examples(
                split, tokenizer, max_length=max_length, multilabel=False, num_labels=0
            )

        train_data = tokenized(setup.train)
        started = time.perf_counter()
        pairs = sample_pairs(train_data.labels.tolist(), config.num_pairs, hp.seed)
        positive = sum(pair.positive for pair in pairs)
        callbacks.on_event(
            "pairs_sampled",
            f"{len(pairs)} pairs ({positive} positive, {len(pairs) - positive} negative) "
            f"sampled from {len(setup.train)} examples (asked for {config.num_pairs})",
            {
                "pairs": len(pairs),
                "positive": positive,
                "negative": len(pairs) - positive,
                "requested": config.num_pairs,
                "examples": len(setup.train),
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        losses = tune_encoder(
            encoder,
            pair_loader(pairs, train_data, tokenizer, batch_size=hp.batch_size, seed=hp.seed),
            pooling=pooling,
            config=config,
            weight_decay=hp.weight_decay,
            warmup_ratio=hp.warmup_ratio,
            max_grad_norm=hp.max_grad_norm,
            callbacks=callbacks,
            device=device,
        )
        callbacks.on_event(
            "encoder_tuned",
            f"encoder tuned on {len(pairs)} pairs for {config.pair_epochs} epochs "
            f"(cosine loss {losses[0]:.4f} -> {losses[-1]:.4f})",
            {"epochs": config.pair_epochs, "pairs": len(pairs), "epoch_losses": losses},
        )

        encoder.requires_grad_(False)
        total = len(setup.train) + len(setup.validation)

        def report(done: int) -> None:
            callbacks.on_phase_progress(phase="extracting_features", done=done, total=total)

        featurizer = Featurizer.for_encoder(
            encoder,
            tokenizer_dir=setup.base_model_dir,
            tokenizer=tokenizer,
            pooling=pooling,
            max_length=max_length,
            batch_size=hp.batch_size,
            device=device,
            cache=setup.feature_cache,
        )
        train_x, val_x = featurizer.features(setup.train, setup.validation, progress=report)
        val_labels = label_tensor(setup.validation, multilabel=False, num_labels=setup.num_labels)
        features = {
            "train": TensorDataset(train_x, train_data.labels.to(device)),
            "validation": TensorDataset(val_x, val_labels.to(device)),
        }

        head = nn.Linear(int(features["train"].tensors[0].shape[1]), setup.num_labels).to(device)
        train_loader = DataLoader(
            features["train"],
            batch_size=hp.batch_size,
            shuffle=True,
            generator=make_generator(hp.seed),
        )
        val_loader = DataLoader(features["validation"], batch_size=hp.batch_size)
        optimizer = torch.optim.AdamW(
            head.parameters(), lr=hp.effective_learning_rate(config), weight_decay=hp.weight_decay
        )
        total_steps = hp.epochs * len(train_loader)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, math.ceil(total_steps * hp.warmup_ratio), total_steps
        )
        result = fit(
            model=head,
            forward=head,
            train_loader=train_loader,
            val_loader=val_loader,
            optimizer=optimizer,
            scheduler=scheduler,
            epochs=hp.epochs,
            max_grad_norm=hp.max_grad_norm,
            multilabel=False,
            callbacks=callbacks,
            device=device,
            checkpoint=setup.checkpoint,
            plan=setup.plan,
        )
        head.eval()
        return TrainedModel(
            kind="head",
            model=head,
            tokenizer=tokenizer,
            task=setup.task,
            label_names=setup.label_names,
            base_model_dir=setup.base_model_dir,
            strategy=self.name,
            max_length=max_length,
            metrics=result.metrics,
            history=result.history,
            selection=result.selection,
            pooling=pooling,
            backbone=encoder,
        )
