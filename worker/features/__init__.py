"""Pooled encoder features, cached across jobs (see docs/strategies.md, "Feature cache").

``worker.features`` never imports ``worker.strategies``: strategies and the final evaluation
use it, not the other way round.
"""

from worker.features.featurizer import Featurizer, extract_features, load_frozen_encoder
from worker.features.identity import FeatureSpace, example_keys
from worker.features.store import FeatureCache, ShardInfo

__all__ = [
    "FeatureCache",
    "FeatureSpace",
    "Featurizer",
    "ShardInfo",
    "example_keys",
    "extract_features",
    "load_frozen_encoder",
]
