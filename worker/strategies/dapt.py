"""``dapt``: domain-adaptive continued pretraining, then a downstream strategy in the same job.

Contract:

- Masked-LM phase: ``AutoModelForMaskedLM`` over ``setup.base_model_dir`` trains for
  ``mlm_steps`` optimisation steps on ``setup.aux_texts["unlabeled_dataset_id"]`` (shuffled,
  cycled, truncated to the job's ``max_length``), with ``DataCollatorForLanguageModeling``
  masking ``mlm_probability`` of the non-special tokens (80% [MASK], 10% random, 10% kept;
  seeded by ``hp.seed``). AdamW at ``mlm_learning_rate``, warmup then linear decay, clipping.
  It runs in the one loop as the phase ``mlm`` (:func:`worker.training.loop.fit`): progress
  to ``on_phase_progress`` after every step (it may raise ``TrainingCancelled``), checkpoints
  of its own, so a released job resumes the phase (or skips it when it had finished); then
  ``on_event("mlm_done")`` reports the mean loss of the first and the last window of steps
  (:func:`loss_window`), also added to the final metrics.
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
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

from app.contract.strategies import STRATEGY_CONFIGS, DaptStrategy
from worker.core.data import Cycled, move_batch
from worker.core.device import make_generator, seed_everything
from worker.core.long_text import LongText, encode_windows
from worker.core.models import load_encoder
from worker.strategies.toolkit import adamw, max_length_for, warmup_schedule
from worker.training.loop import fit
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup, strategy_named

UNLABELED_FIELD = "unlabeled_dataset_id"


def loss_window(losses: list[float]) -> tuple[float, float, int]:
    """Mean loss of the first and of the last ``k`` steps, and ``k`` (a fifth, 1..20 steps)."""
    k = max(1, min(20, len(losses) // 5))
    return sum(losses[:k]) / k, sum(losses[-k:]) / k, k


def continue_pretraining(
    setup: TrainingSetup, texts: list[str], config: DaptStrategy
) -> tuple[nn.Module, list[float]]:
    """The masked-LM phase: the adapted encoder (``AutoModel``, on CPU) and the step losses
    (of this attempt: a resumed phase reports those after the resume)."""
    mlm = AutoModelForMaskedLM.from_pretrained(
        setup.base_model_dir, use_safetensors=True, dtype=torch.float32
    ).to(setup.device)
    tokenizer = setup.tokenizer
    # every window of a text is a sequence of its own here (long_text chunks: more text)
    windows = encode_windows(
        tokenizer,
        texts,
        max_length=max_length_for(setup, mlm.config),
        long_text=LongText.of(setup.hp),
        return_special_tokens_mask=True,
    )
    rows = [windows.window(i) for i in range(sum(windows.counts))]
    loader: DataLoader[Any] = DataLoader(
        rows,  # type: ignore[arg-type]
        batch_size=setup.hp.batch_size,
        shuffle=True,
        generator=make_generator(setup.hp.seed),
        collate_fn=lambda batch: dict(tokenizer.pad(batch, return_tensors="pt")),
    )
    # tokens are masked when a batch trains, not when it is loaded: a resumed phase skips the
    # batches done before (loading them again) without drawing masks, so the global RNG,
    # restored from the checkpoint, draws the masks an uninterrupted run would. (The
    # collator's own ``seed`` refuses to run inside a Celery pool process.)
    masking = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mlm_probability)
    optimizer = adamw(mlm, setup, lr=config.mlm_learning_rate)

    def compute_loss(batch: dict[str, torch.Tensor], done: int) -> torch.Tensor:
        inputs = dict(batch)
        special = inputs.pop("special_tokens_mask")
        inputs["input_ids"], inputs["labels"] = masking.torch_mask_tokens(
            inputs["input_ids"], special_tokens_mask=special
        )
        loss: torch.Tensor = mlm(**move_batch(inputs, setup.device)).loss
        return loss

    result = fit(
        setup,
        model=mlm,
        train_loader=Cycled(loader, config.mlm_steps),
        optimizer=optimizer,
        scheduler=warmup_schedule(optimizer, setup, config.mlm_steps),
        compute_loss=compute_loss,
        epochs=1,
        phase="mlm",
    )
    losses = result.step_losses or [result.metrics["train_loss"]]
    # the base with its own pooler (masked-LM heads drop it), the encoder weights adapted
    encoder = load_encoder(setup.base_model_dir)
    adapted = getattr(mlm, mlm.base_model_prefix).state_dict()
    missing, unexpected = encoder.load_state_dict(adapted, strict=False)
    if unexpected or any(not key.startswith("pooler.") for key in missing):
        raise ValueError(f"masked-LM encoder does not match the base: {missing} {unexpected}")
    return encoder.cpu().eval(), losses


def save_encoder(encoder: nn.Module, tokenizer: Any, base_model_dir: Path, dest: Path) -> Path:
    """``encoder`` + ``tokenizer`` (+ the base's ``1_Pooling``) as a model directory."""
    encoder.save_pretrained(dest, safe_serialization=True)  # type: ignore[operator]
    tokenizer.save_pretrained(dest)
    pooling = base_model_dir / "1_Pooling"
    if pooling.is_dir():
        shutil.copytree(pooling, dest / "1_Pooling")
    return dest


class DomainAdaptivePretraining(Strategy, name="dapt", artifact_kind="full"):
    def train(self, setup: TrainingSetup, config: DaptStrategy) -> TrainedModel:
        downstream_config = STRATEGY_CONFIGS[config.then].model_validate({})
        if setup.task not in downstream_config.supported_tasks:
            raise ValueError(f"dapt then {config.then!r} does not support task {setup.task!r}")
        texts = setup.aux_texts.get(UNLABELED_FIELD) or []
        if not texts:
            raise ValueError("dapt needs in-domain texts (unlabeled_dataset_id is empty)")
        started = time.perf_counter()
        encoder, losses = continue_pretraining(setup, list(texts), config)
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
            result = strategy_named(config.then).train(downstream, downstream_config)
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
