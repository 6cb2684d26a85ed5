"""Prometheus metrics of an inference worker (served on ``TUNESERVE_SERVING_METRICS_PORT``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

BATCH_ROWS = Histogram(
    "tuneserve_infer_batch_rows",
    "Inputs in one forward pass of the batcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_TOKENS = Histogram(
    "tuneserve_infer_batch_padded_tokens",
    "Padded tokens in one forward pass.",
    buckets=(16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768),
)
BATCH_MODELS = Histogram(
    "tuneserve_infer_batch_models",
    "Different models served by one forward pass (shared backbones).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
QUEUE_WAIT = Histogram(
    "tuneserve_infer_queue_wait_seconds",
    "From the API sending a request to the forward pass of its first input.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FORWARD_SECONDS = Histogram(
    "tuneserve_infer_forward_seconds",
    "Time of one forward pass (backbone and heads).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REQUESTS = Counter(
    "tuneserve_infer_requests",
    "Predict requests by outcome: ok, expired (deadline passed), rejected (4xx), failed.",
    ["outcome"],
)


class RegistryCollector(Collector):
    """The model cache (models, backbones, bytes, hits, misses, evictions) and the inputs
    waiting, read at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, float]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        values = self.snapshot()
        gauges = {
            "tuneserve_infer_models_loaded": "Fine-tuned models loaded (heads, adapters, full).",
            "tuneserve_infer_backbones_loaded": "Networks loaded (shared encoders, full models).",
            "tuneserve_infer_model_bytes": "Bytes of the loaded weights, shared parts once.",
            "tuneserve_infer_pending_inputs": "Inputs taken from Redis and not yet answered.",
        }
        for name, text in gauges.items():
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], values.get(name, 0.0))
            yield gauge
        counters = {
            "tuneserve_infer_model_cache_hits": "Requests whose model was loaded already.",
            "tuneserve_infer_model_cache_misses": "Models loaded on a request.",
            "tuneserve_infer_model_cache_evictions": "Models unloaded to stay within budget.",
        }
        for name, text in counters.items():
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], values.get(name, 0.0))
            yield counter


def register_registry_collector(snapshot: Callable[[], dict[str, float]]) -> RegistryCollector:
    collector = RegistryCollector(snapshot)
    REGISTRY.register(collector)
    return collector
