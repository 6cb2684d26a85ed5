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
   per step in a seeded order. It runs in the one loop as the phase ``contrastive_pairs``
   (:func:`worker.training.loop.fit`): progress to ``on_phase_progress`` after every step (it
   may raise ``TrainingCancelled``, which propagates), checkpoints of its own; an event
   ``encoder_tuned`` reports the first and last epoch's mean loss.
3. **Head.** The tuned encoder is frozen; each example's feature vector is computed once
   (``phase="extracting_features"``; through the job's feature cache when it has one, in the
   namespace of the tuned weights' hash) and ``nn.Linear(hidden, num_labels)`` trains on them
   with :func:`worker.training.loop.fit` for ``hp.epochs`` at ``hp.effective_learning_rate``
   (default 1e-2), exactly as ``linear_probe`` does.

The result is a ``head`` :class:`TrainedModel` whose ``backbone`` is the tuned encoder: the
artifact carries it under ``encoder/`` and is served as encoder + pooling + head. On resume
after a release the pair phase continues from its checkpoint (a finished phase is restored
whole and skipped); ``fit`` then resumes the head from its own.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from app.contract.strategies import ContrastiveStrategy
from worker.core.data import TokenizedExamples, move_batch, tokenize_examples
from worker.core.device import make_generator
from worker.core.long_text import LongText
from worker.core.models import load_encoder
from worker.core.pooling import PoolingMode, pool, resolve_pooling
from worker.features import Featurizer
from worker.strategies.toolkit import (
    adamw,
    max_length_for,
    split_features,
    train_head,
    warmup_schedule,
)
from worker.training.loop import fit
from worker.training.pairs import Pair, sample_pairs
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup

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
    setup: TrainingSetup,
    encoder: nn.Module,
    pairs: list[Pair],
    data: TokenizedExamples,
    *,
    pooling: PoolingMode,
    config: ContrastiveStrategy,
) -> list[float]:
    """Train ``encoder`` on ``pairs`` (the phase ``contrastive_pairs`` of :func:`fit`);
    returns the mean loss of each epoch."""
    loader = pair_loader(
        pairs, data, setup.tokenizer, batch_size=setup.hp.batch_size, seed=setup.hp.seed
    )
    optimizer = adamw(encoder, setup, lr=config.pair_learning_rate)
    device = setup.device

    def compute_loss(batch: tuple[dict[str, torch.Tensor], torch.Tensor], done: int) -> Any:
        inputs, targets = batch
        return cosine_similarity_loss(
            encoder, move_batch(inputs, device), targets.to(device), pooling
        )

    result = fit(
        setup,
        model=encoder,
        train_loader=loader,
        optimizer=optimizer,
        scheduler=warmup_schedule(optimizer, setup, config.pair_epochs * len(loader)),
        compute_loss=compute_loss,
        epochs=config.pair_epochs,
        phase=PAIR_PHASE,
    )
    encoder.eval()
    return [metrics["train_loss"] for metrics in result.history]


class Contrastive(Strategy, name="contrastive", artifact_kind="head"):
    def train(self, setup: TrainingSetup, config: ContrastiveStrategy) -> TrainedModel:
        hp, device, tokenizer, callbacks = setup.hp, setup.device, setup.tokenizer, setup.callbacks
        pooling = resolve_pooling(setup.base_model_dir, "auto")
        encoder = load_encoder(setup.base_model_dir).to(device)
        max_length = max_length_for(setup, encoder.config)
        long_text = LongText.of(setup.hp)
        # the pair phase compares one window per text: with chunks, its head and tail
        pair_reading = LongText("head_tail") if long_text.mode == "chunks" else long_text
        train_data = tokenize_examples(
            setup.train,
            tokenizer,
            max_length=max_length,
            multilabel=False,
            num_labels=0,
            long_text=pair_reading,
        )
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
        losses = tune_encoder(setup, encoder, pairs, train_data, pooling=pooling, config=config)
        callbacks.on_event(
            "encoder_tuned",
            f"encoder tuned on {len(pairs)} pairs for {config.pair_epochs} epochs "
            f"(cosine loss {losses[0]:.4f} -> {losses[-1]:.4f})",
            {"epochs": config.pair_epochs, "pairs": len(pairs), "epoch_losses": losses},
        )
        encoder.requires_grad_(False)
        featurizer = Featurizer.for_encoder(
            encoder,
            tokenizer_dir=setup.base_model_dir,
            tokenizer=tokenizer,
            pooling=pooling,
            max_length=max_length,
            batch_size=hp.batch_size,
            device=device,
            cache=setup.feature_cache,
            long_text=long_text,
        )
        return train_head(
            setup,
            split_features(setup, featurizer),
            lr=hp.effective_learning_rate(config),
            strategy=self.name,
            max_length=max_length,
            pooling=pooling,
            backbone=encoder,
        )
