"""``linear_probe``: the frozen backbone is a feature extractor; a new linear head trains.

The backbone stays in eval mode with ``requires_grad=False``. Each example's feature vector
is computed once (one inference-mode pass over train and validation), kept as a tensor and
reused every epoch; then ``nn.Linear(hidden, num_labels)`` trains with AdamW over it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoModel, get_linear_schedule_with_warmup

from app.jobs.strategies import LinearProbeStrategy
from worker.training.data import (
    TokenizedExamples,
    effective_max_length,
    make_loader,
    move_batch,
    tokenize_examples,
)
from worker.training.device import autocast, make_generator
from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup, fit
from worker.training.pooling import PoolingMode, pool, resolve_pooling


def extract_features(
    backbone: nn.Module,
    data: TokenizedExamples,
    tokenizer: Any,
    *,
    pooling: PoolingMode,
    batch_size: int,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """One pass of the backbone over ``data``: ``[len(data), hidden]`` float32 on ``device``.

    ``progress(done)`` is called after each batch with the number of examples done so far.
    """
    chunks: list[torch.Tensor] = []
    done = 0
    with torch.inference_mode(), autocast(device):
        for inputs, _ in make_loader(data, tokenizer, batch_size=batch_size):
            inputs = move_batch(inputs, device)
            outputs = backbone(**inputs)
            chunks.append(pool(outputs, inputs["attention_mask"], pooling).float())
            done += int(inputs["attention_mask"].shape[0])
            if progress is not None:
                progress(done)
    # concatenated outside inference mode: a normal tensor autograd may save for backward
    return torch.cat(chunks)


class LinearProbe:
    name: str = "linear_probe"
    artifact_kind: ArtifactKind = "head"

    def train(self, setup: TrainingSetup, config: LinearProbeStrategy) -> TrainedModel:
        hp, device, tokenizer = setup.hp, setup.device, setup.tokenizer
        pooling = resolve_pooling(setup.base_model_dir, config.pooling)
        backbone = AutoModel.from_pretrained(
            setup.base_model_dir, use_safetensors=True, dtype=torch.float32
        ).to(device)
        backbone.eval().requires_grad_(False)
        max_length = effective_max_length(tokenizer, hp.max_length, backbone.config)

        started = time.perf_counter()
        splits = {}
        total = len(setup.train) + len(setup.validation)
        offset = 0

        def report(done: int) -> None:
            setup.callbacks.on_phase_progress(
                phase="extracting_features", done=offset + done, total=total
            )

        for split_name, split in (("train", setup.train), ("validation", setup.validation)):
            data = tokenize_examples(
                split,
                tokenizer,
                max_length=max_length,
                multilabel=setup.multilabel,
                num_labels=setup.num_labels,
            )
            features = extract_features(
                backbone,
                data,
                tokenizer,
                pooling=pooling,
                batch_size=hp.batch_size,
                device=device,
                progress=report,
            )
            offset += len(split)
            splits[split_name] = TensorDataset(features, data.labels.to(device))
        seconds = time.perf_counter() - started
        hidden_size = int(splits["train"].tensors[0].shape[1])
        setup.callbacks.on_event(
            "features_cached",
            f"features of {len(setup.train)} train and {len(setup.validation)} validation "
            f"examples cached in {seconds:.1f}s ({pooling} pooling)",
            {
                "train_examples": len(setup.train),
                "validation_examples": len(setup.validation),
                "seconds": round(seconds, 3),
                "pooling": pooling,
                "hidden_size": hidden_size,
            },
        )

        head = nn.Linear(hidden_size, setup.num_labels).to(device)
        train_loader = DataLoader(
            splits["train"],
            batch_size=hp.batch_size,
            shuffle=True,
            generator=make_generator(hp.seed),
        )
        val_loader = DataLoader(splits["validation"], batch_size=hp.batch_size)
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
            multilabel=setup.multilabel,
            callbacks=setup.callbacks,
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
        )
