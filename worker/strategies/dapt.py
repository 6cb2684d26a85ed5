"""``dapt``: domain-adaptive continued pretraining, then a downstream strategy in the same job.

Contract:

- Masked-LM phase: ``AutoModelForMaskedLM`` over ``setup.base_model_dir`` trains for
  ``mlm_steps`` optimisation steps on ``setup.aux_texts["unlabeled_dataset_id"]`` (shuffled,
  cycled, truncated to the job's ``max_length``), with ``DataCollatorForLanguageModeling``
  masking ``mlm_probability`` of the non-special tokens (80% [MASK], 10% random, 10% kept;
  seeded by ``hp.seed``). AdamW at ``mlm_learning_rate``, warmup then linear decay, clipping.
  Progress goes to ``on_phase_progress(phase="mlm")`` after every step (it may raise
  ``TrainingCancelled``); then ``on_event("mlm_done")`` reports the mean loss of the first and
  the last window of steps (:func:`loss_window`), also added to the final metrics.
- The adapted encoder (the MLM model's base with the base's own pooler, which masked-LM
  training neither uses nor changes) is saved with the tokenizer (and a sentence-transformers
  ``1_Pooling`` config, if the base has one) into a temporary directory, removed at the end.
- Downstream phase: the strategy named by ``then``, with its default settings, runs on a
  ``TrainingSetup`` whose ``base_model_dir`` is that directory (same splits, hyperparameters,
  callbacks and checkpoints; the learning rate is ``hp.learning_rate`` or the downstream
  strategy's default). The global RNG is re-seeded with ``hp.seed`` first.
- The artifact never refers to the temporary directory: ``full`` results are kept as they
  are; a ``head`` result (linear_probe) gets the adapted encoder as ``backbone`` (saved inside
  the artifact); a ``lora`` result is merged (``merge_and_unload``) into ``full`` weights. Its
  ``base_model_dir`` is the job's base. Tasks: those of the downstream strategy.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    get_linear_schedule_with_warmup,
)

from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import STRATEGY_CONFIGS, DaptStrategy
from worker.strategies.base import Strategy
from worker.training.callbacks import TrainingCallbacks
from worker.training.data import effective_max_length, move_batch
from worker.training.device import autocast, make_generator, seed_everything
from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup

UNLABELED_FIELD = "unlabeled_dataset_id"


def loss_window(losses: list[float]) -> tuple[float, float, int]:
    """Mean loss of the first and of the last ``k`` steps, and ``k`` (a fifth, 1..20 steps)."""
    k = max(1, min(20, len(losses) // 5))
    return sum(losses[:k]) / k, sum(losses[-k:]) / k, k


def continue_pretraining(
    base_model_dir: Path,
    texts: list[str],
    *,
    tokenizer: Any,
    config: DaptStrategy,
    hp: Hyperparameters,
    device: torch.device,
    callbacks: TrainingCallbacks,
) -> tuple[nn.Module, list[float]]:
    """The masked-LM phase: the adapted encoder (``AutoModel``, on CPU) and the step losses."""
    mlm = AutoModelForMaskedLM.from_pretrained(
        base_model_dir, use_safetensors=True, dtype=torch.float32
    ).to(device)
    max_length = effective_max_length(tokenizer, hp.max_length, mlm.config)
    encodings = tokenizer(
        texts, truncation=True, max_length=max_length, return_special_tokens_mask=True
    )
    rows = [{key: values[i] for key, values in encodings.items()} for i in range(len(texts))]
    # masking draws from torch's global RNG, seeded by ``train_model``: the collator's own
    # ``seed`` refuses to run inside a Celery pool process (it expects DataLoader workers)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability)
    loader: DataLoader[Any] = DataLoader(
        rows,  # type: ignore[arg-type]
        batch_size=hp.batch_size,
        shuffle=True,
        generator=make_generator(hp.seed),
        collate_fn=collator,
    )

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        while True:  # a new shuffled, newly masked pass each time the texts run out
            yield from loader

    parameters = [p for p in mlm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=config.mlm_learning_rate, weight_decay=hp.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(config.mlm_steps * hp.warmup_ratio), config.mlm_steps
    )
    mlm.train()
    losses: list[float] = []
    stream = batches()
    for step in range(1, config.mlm_steps + 1):
        with autocast(device):
            loss = mlm(**move_batch(dict(next(stream)), device)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, hp.max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        callbacks.on_phase_progress(phase="mlm", done=step, total=config.mlm_steps)

    # the base with its own pooler (masked-LM heads drop it), the encoder weights adapted
    encoder = AutoModel.from_pretrained(base_model_dir, use_safetensors=True, dtype=torch.float32)
    adapted = getattr(mlm, mlm.base_model_prefix).state_dict()
    missing, unexpected = encoder.load_state_dict(adapted, strict=False)
    if unexpected or any(not key.startswith("pooler.") for key in missing):
        raise ValueError(f"masked-LM encoder does not match the base: {missing} {unexpected}")
    del mlm, optimizer
    return encoder.cpu().eval(), losses


def save_encoder(encoder: nn.Module, tokenizer: Any, base_model_dir: Path, dest: Path) -> Path:
    """``encoder`` + ``tokenizer`` (+ the base's ``1_Pooling``) as a model directory."""
    encoder.save_pretrained(dest, safe_serialization=True)  # type: ignore[operator]
    tokenizer.save_pretrained(dest)
    pooling = base_model_dir / "1_Pooling"
    if pooling.is_dir():
        shutil.copytree(pooling, dest / "1_Pooling")
    return dest


class DomainAdaptivePretraining:
    name: str = "dapt"
    artifact_kind: ArtifactKind = "full"

    def __init__(self, *, downstream: Callable[[str], Strategy]) -> None:
        #: the strategy implementation for ``config.then``, by name (the registry's lookup,
        #: handed in by the registry: this module does not import it)
        self.downstream = downstream

    def train(self, setup: TrainingSetup, config: DaptStrategy) -> TrainedModel:
        downstream_config = STRATEGY_CONFIGS[config.then].model_validate({})
        if setup.task not in downstream_config.supported_tasks:
            raise ValueError(f"dapt then {config.then!r} does not support task {setup.task!r}")
        texts = setup.aux_texts.get(UNLABELED_FIELD) or []
        if not texts:
            raise ValueError("dapt needs in-domain texts (unlabeled_dataset_id is empty)")
        started = time.perf_counter()
        encoder, losses = continue_pretraining(
            setup.base_model_dir,
            list(texts),
            tokenizer=setup.tokenizer,
            config=config,
            hp=setup.hp,
            device=setup.device,
            callbacks=setup.callbacks,
        )
        first, last, window = loss_window(losses)
        setup.callbacks.on_event(
            "mlm_done",
            f"masked-LM training: {len(losses)} steps on {len(texts)} texts in "
            f"{time.perf_counter() - started:.1f}s; loss {first:.3f} -> {last:.3f} "
            f"(mean of the first and last {window} steps)",
            {
                "steps": len(losses),
                "texts": len(texts),
                "first_loss": first,
                "last_loss": last,
                "window": window,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        with tempfile.TemporaryDirectory(prefix="tuneserve-dapt-") as tmp:
            adapted_dir = save_encoder(
                encoder, setup.tokenizer, setup.base_model_dir, Path(tmp) / "encoder"
            )
            seed_everything(setup.hp.seed)
            downstream = dataclasses.replace(setup, base_model_dir=adapted_dir)
            result = self.downstream(config.then).train(downstream, downstream_config)
            result = self._detach_from(result, encoder)
        return dataclasses.replace(
            result,
            base_model_dir=setup.base_model_dir,
            strategy=self.name,
            metrics={**result.metrics, "mlm_first_loss": first, "mlm_last_loss": last},
        )

    @staticmethod
    def _detach_from(result: TrainedModel, encoder: nn.Module) -> TrainedModel:
        """A result that needs nothing from the temporary directory."""
        if result.kind == "head":
            if result.backbone is not None:
                return result  # the downstream changed and kept its own encoder
            return dataclasses.replace(result, backbone=encoder)
        if result.kind == "lora":
            merged: nn.Module = result.model.merge_and_unload()  # type: ignore[operator]
            return dataclasses.replace(result, kind="full", model=merged.eval())
        return result
