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

import time

from transformers import AutoConfig

from app.contract.strategies import LinearProbeStrategy
from worker.core.long_text import LongText
from worker.core.pooling import resolve_pooling
from worker.features import Featurizer
from worker.strategies.toolkit import max_length_for, split_features, train_head
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup


class LinearProbe(Strategy, name="linear_probe", artifact_kind="head"):
    def train(self, setup: TrainingSetup, config: LinearProbeStrategy) -> TrainedModel:
        pooling = resolve_pooling(setup.base_model_dir, config.pooling)
        # the config alone (no weights): on a full cache hit the backbone is never loaded
        max_length = max_length_for(setup, AutoConfig.from_pretrained(setup.base_model_dir))
        featurizer = Featurizer.for_base(
            setup.base_model_dir,
            tokenizer=setup.tokenizer,
            pooling=pooling,
            max_length=max_length,
            batch_size=setup.hp.batch_size,
            device=setup.device,
            cache=setup.feature_cache,
            long_text=LongText.of(setup.hp),
        )
        started = time.perf_counter()
        train_x, val_x = split_features(setup, featurizer)
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
        return train_head(
            setup,
            (train_x, val_x),
            lr=setup.hp.effective_learning_rate(config),
            strategy=self.name,
            max_length=max_length,
            pooling=pooling,
        )
