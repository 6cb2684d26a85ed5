"""``linear_probe``: the frozen backbone is a feature extractor; a new linear head trains.

The backbone stays in eval mode with ``requires_grad=False``. Each example's feature vector
is computed once (one inference-mode pass over train and validation), kept as a tensor and
reused every epoch; then ``nn.Linear(hidden, num_labels)`` trains with AdamW over it.

With ``setup.feature_cache`` the features come from the cache across jobs
(:mod:`worker.features`): only the examples it misses go through the backbone, which is not
even loaded when every example is a hit. The ``features_cached`` event reports
``cache_hits`` and ``cache_misses`` (in examples).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transformers import AutoConfig, get_linear_schedule_with_warmup

from app.contract.strategies import LinearProbeStrategy
from worker.features import Featurizer, extract_features
from worker.training.data import effective_max_length, label_tensor
from worker.training.device import make_generator
from worker.training.loop import ArtifactKind, TrainedModel, TrainingSetup, fit
from worker.training.pooling import resolve_pooling

__all__ = ["LinearProbe", "extract_features"]


class LinearProbe:
    name: str = "linear_probe"
    artifact_kind: ArtifactKind = "head"

    def train(self, setup: TrainingSetup, config: LinearProbeStrategy) -> TrainedModel:
        hp, device, tokenizer = setup.hp, setup.device, setup.tokenizer
        pooling = resolve_pooling(setup.base_model_dir, config.pooling)
        # the config alone (no weights): on a full cache hit the backbone is never loaded
        encoder_config = AutoConfig.from_pretrained(setup.base_model_dir)
        max_length = effective_max_length(tokenizer, hp.max_length, encoder_config)
        featurizer = Featurizer.for_base(
            setup.base_model_dir,
            tokenizer=tokenizer,
            pooling=pooling,
            max_length=max_length,
            batch_size=hp.batch_size,
            device=device,
            cache=setup.feature_cache,
        )

        started = time.perf_counter()
        total = len(setup.train) + len(setup.validation)

        def report(done: int) -> None:
            setup.callbacks.on_phase_progress(phase="extracting_features", done=done, total=total)

        train_x, val_x = featurizer.features(setup.train, setup.validation, progress=report)
        multilabel, num_labels = setup.multilabel, setup.num_labels
        splits = {
            name: TensorDataset(
                features,
                label_tensor(examples, multilabel=multilabel, num_labels=num_labels).to(device),
            )
            for name, features, examples in (
                ("train", train_x, setup.train),
                ("validation", val_x, setup.validation),
            )
        }
        seconds = time.perf_counter() - started
        hidden_size = int(train_x.shape[1])
        setup.callbacks.on_event(
            "features_cached",
            f"features of {len(setup.train)} train and {len(setup.validation)} validation "
            f"examples ready in {seconds:.1f}s ({pooling} pooling; {featurizer.hits} from the "
            f"feature cache, {featurizer.misses} computed)",
            {
                "train_examples": len(setup.train),
                "validation_examples": len(setup.validation),
                "seconds": round(seconds, 3),
                "pooling": pooling,
                "hidden_size": hidden_size,
                "cache_hits": featurizer.hits,
                "cache_misses": featurizer.misses,
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
