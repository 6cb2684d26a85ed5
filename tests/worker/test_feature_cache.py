"""The feature cache: a second linear_probe job on the same data runs no encoder forward.

Real torch on tiny random BERTs; the encoder's forwards are counted with a global forward
hook (as in test_linear_probe.py). Jobs run as the runner runs them: ``train_model`` then
``final_evaluation``, both given the cache.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from transformers import AutoTokenizer, BertModel

from app import telemetry
from app.config import get_settings
from app.contract.hyperparameters import Hyperparameters
from app.contract.strategies import ContrastiveStrategy, LinearProbeStrategy
from tests.conftest import REDIS_URL
from worker.core.data import Examples
from worker.features import FeatureCache, Featurizer
from worker.features.store import FEATURES, MANIFEST, STALE_SECONDS
from worker.reporting import FinalEvaluation, final_evaluation, served_logits
from worker.strategies.registry import train_model
from worker.testing import learnable_examples
from worker.training.callbacks import NullCallbacks
from worker.training.recipe import TrainedModel

CPU = torch.device("cpu")
LABELS = ["A", "B"]
ROOT = Path(__file__).resolve().parents[2]
COUNTER_DB = 14  # a Redis database of its own (api 13, integration 12, chaos 10, serving 9)


class ForwardCounter:
    """Counts forwards of every BertModel, and the examples they encoded."""

    def __enter__(self) -> ForwardCounter:
        self.calls, self.rows = 0, 0
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, BertModel):
            self.calls += 1
            self.rows += int(output[0].shape[0])

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


class Recorder(NullCallbacks):
    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.phase: list[tuple[int, int]] = []

    def on_event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.events[kind] = data or {}

    def on_phase_progress(self, *, phase: str, done: int, total: int) -> None:
        if phase == "extracting_features":
            self.phase.append((done, total))


def dataset(n_per_class: int = 40, seed: int = 3) -> Examples:
    texts, names = learnable_examples(n_per_class, seed)
    return Examples(texts, [LABELS.index(name) for name in names])


def split(data: Examples, seed: int, validation_share: float = 0.25) -> tuple[Examples, Examples]:
    """A seeded split, as a job with another ``seed`` would draw it."""
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    cut = int(len(order) * (1 - validation_share))

    labels = cast(list[int], data.labels)

    def pick(rows: list[int]) -> Examples:
        return Examples([data.texts[i] for i in rows], [labels[i] for i in rows])

    return pick(order[:cut]), pick(order[cut:])


def run_job(
    base: Path,
    train: Examples,
    validation: Examples,
    cache: FeatureCache | None,
    *,
    test: Examples | None = None,
    strategy: Any = None,
    **hp: Any,
) -> tuple[TrainedModel, FinalEvaluation, Recorder]:
    """A job as the runner runs it: train_model, then final_evaluation, one cache for both.
    Without the serving-precision check (it runs the served model, encoder included, where
    the CPU has native bf16): the forwards counted here are the feature path's."""
    hyperparameters = Hyperparameters(
        **{"epochs": 3, "batch_size": 16, "learning_rate": 1e-2, "seed": 0, **hp}
    )
    recorder = Recorder()
    trained = train_model(
        base_model_dir=base,
        task="text-classification",
        label_names=LABELS,
        train=train,
        validation=validation,
        strategy=strategy or LinearProbeStrategy(),
        hp=hyperparameters,
        callbacks=recorder,
        device=CPU,
        feature_cache=cache,
    )
    evaluation = final_evaluation(
        trained,
        validation=validation,
        test=test,
        hp=hyperparameters,
        device=CPU,
        feature_cache=cache,
        check_precision=False,
    )
    return trained, evaluation, recorder


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing at a fresh data directory (the cache lives in its ``features/``)."""
    monkeypatch.setenv("TUNESERVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TUNESERVE_BROKER_URL", f"{REDIS_URL}/{COUNTER_DB}")
    get_settings.cache_clear()
    telemetry.reset_client()
    yield tmp_path / "data"
    get_settings.cache_clear()
    telemetry.reset_client()


def new_cache() -> FeatureCache:
    cache = FeatureCache.from_settings()
    assert cache is not None
    return cache


def shard_dirs(root: Path) -> list[Path]:
    manifests = root.glob(f"*/*/{MANIFEST}")
    return sorted(p.parent for p in manifests if not p.parent.name.startswith("."))


def head_weight(trained: TrainedModel) -> torch.Tensor:
    assert isinstance(trained.model, torch.nn.Linear)
    return trained.model.weight


def assert_same_evaluation(a: FinalEvaluation, b: FinalEvaluation) -> None:
    for x, y in ((a.validation, b.validation), (a.test, b.test)):
        assert x is not None and y is not None
        assert x["accuracy"] == pytest.approx(y["accuracy"])
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-4)
        assert x["macro_f1"] == pytest.approx(y["macro_f1"])


def test_second_job_runs_no_encoder_forward(tiny_bert_dir: Path, data_dir: Path) -> None:
    train, validation = split(dataset(), seed=0)
    test = dataset(10, seed=11)
    plain, plain_eval, _ = run_job(tiny_bert_dir, train, validation, None, test=test)

    with ForwardCounter() as first_pass:
        first, first_eval, first_rec = run_job(
            tiny_bert_dir, train, validation, new_cache(), test=test
        )
    assert first_pass.calls > 0
    assert first_rec.events["features_cached"]["cache_misses"] == len(train) + len(validation)
    assert first_rec.events["features_cached"]["cache_hits"] == 0

    started = time.perf_counter()
    second_cache = new_cache()
    with ForwardCounter() as second_pass:
        second, second_eval, second_rec = run_job(
            tiny_bert_dir, train, validation, second_cache, test=test
        )
    seconds = time.perf_counter() - started
    assert second_pass.calls == 0, "the second job ran the encoder"
    data = second_rec.events["features_cached"]
    assert (data["cache_hits"], data["cache_misses"]) == (len(train) + len(validation), 0)
    assert second_rec.phase[-1] == (len(train) + len(validation),) * 2
    # training and the final evaluation (validation and test) were all hits
    assert second_cache.stats["hits"] == len(train) + 2 * len(validation) + len(test)
    assert second_cache.stats["misses"] == second_cache.stats["writes"] == 0

    # the same head as with freshly computed features, and as without any cache
    assert torch.equal(head_weight(second), head_weight(first))
    torch.testing.assert_close(head_weight(second), head_weight(plain), atol=1e-5, rtol=1e-4)
    assert second.metrics["val_accuracy"] == plain.metrics["val_accuracy"]
    assert second.metrics["val_loss"] == pytest.approx(plain.metrics["val_loss"], abs=1e-5)
    assert_same_evaluation(second_eval, plain_eval)
    assert_same_evaluation(second_eval, first_eval)
    print(f"second job: {seconds:.2f}s, 0 encoder forwards")


def test_cached_logits_are_the_served_ones(
    tiny_bert_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """head(cached features) is what the artifact serves: encoder -> pool -> head."""
    from worker.artifacts import write_artifact
    from worker.serving.predictor import load_predictor

    train, validation = split(dataset(), seed=0)
    cache = new_cache()
    trained, _, _ = run_job(tiny_bert_dir, train, validation, cache)
    with ForwardCounter() as counter:
        cached = served_logits(trained, device=CPU, batch_size=16, feature_cache=cache)(validation)
    assert counter.calls == 0
    artifact = write_artifact(trained, tmp_path / "m", manifest={"base_model": {"id": "tiny"}})
    served = load_predictor(artifact, device=CPU).logits(validation.texts).numpy()
    assert cached.shape == served.shape == (len(validation), 2)
    assert abs(cached - served).max() < 1e-5


def test_other_split_hits_and_new_examples_only_are_computed(
    tiny_bert_dir: Path, data_dir: Path
) -> None:
    data = dataset()
    run_job(tiny_bert_dir, *split(data, seed=0), new_cache())

    # another seed draws another split of the same dataset: still no forward
    with ForwardCounter() as counter:
        _, _, recorder = run_job(tiny_bert_dir, *split(data, seed=1), new_cache(), seed=1)
    assert counter.calls == 0
    assert recorder.events["features_cached"]["cache_misses"] == 0

    # the same dataset plus new rows: only the new rows go through the encoder
    extra = dataset(12, seed=99)
    old = set(data.texts)
    new_texts = {text for text in extra.texts if text not in old}
    new_rows = sum(text in new_texts for text in extra.texts)
    grown = Examples(data.texts + extra.texts, [*data.labels, *extra.labels])
    with ForwardCounter() as counter:
        _, _, recorder = run_job(tiny_bert_dir, *split(grown, seed=2), new_cache(), seed=2)
    assert new_texts and counter.rows == len(new_texts)
    assert recorder.events["features_cached"]["cache_misses"] == new_rows
    assert recorder.events["features_cached"]["cache_hits"] == len(grown) - new_rows


SUBPROCESS = """
import json, sys
from pathlib import Path
from tests.worker.test_feature_cache import ForwardCounter, dataset, new_cache, run_job, split

train, validation = split(dataset(), seed=0)
with ForwardCounter() as counter:
    trained, evaluation, recorder = run_job(Path(sys.argv[1]), train, validation, new_cache())
print(json.dumps({"forwards": counter.calls, **recorder.events["features_cached"],
                  "val_accuracy": trained.metrics["val_accuracy"]}))
"""


def test_cache_survives_a_process_restart(tiny_bert_dir: Path, data_dir: Path) -> None:
    train, validation = split(dataset(), seed=0)
    trained, _, _ = run_job(tiny_bert_dir, train, validation, new_cache())
    env = {
        **os.environ,
        "TUNESERVE_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, str(tiny_bert_dir)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["forwards"] == 0
    assert (result["cache_hits"], result["cache_misses"]) == (len(train) + len(validation), 0)
    assert result["val_accuracy"] == trained.metrics["val_accuracy"]


def featurizer(base: Path, cache: FeatureCache | None) -> Featurizer:
    return Featurizer.for_base(
        base,
        tokenizer=AutoTokenizer.from_pretrained(base),
        pooling="cls",
        max_length=64,
        batch_size=16,
        device=CPU,
        cache=cache,
    )


def test_corrupted_shard_is_rejected_and_recomputed(tiny_bert_dir: Path, data_dir: Path) -> None:
    examples = dataset(20, seed=5)
    (expected,) = featurizer(tiny_bert_dir, None).features(examples)
    featurizer(tiny_bert_dir, new_cache()).features(examples)
    (shard,) = shard_dirs(data_dir / "features")
    raw = bytearray((shard / FEATURES).read_bytes())
    for offset in (len(raw) // 2, len(raw) - 3):  # inside the tensors' data
        raw[offset] ^= 0xFF
    (shard / FEATURES).write_bytes(bytes(raw))

    cache = new_cache()
    again = featurizer(tiny_bert_dir, cache)
    with ForwardCounter() as counter:
        (features,) = again.features(examples)
    assert counter.rows == len(examples), "a corrupted shard must be recomputed"
    assert cache.stats["rejected"] == 1 and cache.stats["hits"] == 0
    assert not shard.exists()  # removed, and replaced by a good one
    torch.testing.assert_close(features, expected)
    hit = featurizer(tiny_bert_dir, new_cache())
    with ForwardCounter() as counter:
        (features,) = hit.features(examples)
    assert counter.calls == 0 and not hit.encoder_loaded  # a full hit never loads the encoder
    torch.testing.assert_close(features, expected)


def test_half_written_shard_is_ignored(tiny_bert_dir: Path, data_dir: Path) -> None:
    examples = dataset(20, seed=6)
    featurizer(tiny_bert_dir, new_cache()).features(examples)
    (shard,) = shard_dirs(data_dir / "features")
    (shard / MANIFEST).unlink()  # as if the writer died before its last write
    tmp = shard.with_name(".tmp-crashed")
    tmp.mkdir()
    (tmp / FEATURES).write_bytes((shard / FEATURES).read_bytes())

    cache = new_cache()
    with ForwardCounter() as counter:
        featurizer(tiny_bert_dir, cache).features(examples)
    assert counter.rows == len(examples)
    assert cache.stats["rejected"] == 0 and cache.stats["writes"] == 1
    assert shard.exists() and tmp.exists()  # fresh debris is left alone (a writer may be busy)
    old = time.time() - STALE_SECONDS - 60
    for path in (shard, tmp):
        os.utime(path, (old, old))
    cache.evict()
    assert not shard.exists() and not tmp.exists()
    assert len(shard_dirs(data_dir / "features")) == 1


def _keys(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(n)]


def _shard_size(tmp_path: Path, n: int, hidden: int) -> int:
    """The bytes one shard of ``n`` rows takes on disk."""
    shard = FeatureCache(tmp_path / "probe", 10**9).store(
        "x", {}, _keys(n, 0), torch.ones(n, hidden)
    )
    assert shard is not None
    return sum(f.stat().st_size for f in shard.iterdir())


def test_eviction_drops_least_recently_used_first(tmp_path: Path, data_dir: Path) -> None:
    cache = FeatureCache(tmp_path / "features", int(_shard_size(tmp_path, 50, 8) * 2.5))
    shards: dict[str, Path] = {}
    for name, seed in (("a", 1), ("b", 2)):
        shard = cache.store(f"ns-{name}", {}, _keys(50, seed), torch.full((50, 8), seed))
        assert shard is not None
        shards[name] = shard
    for name, age in (("a", 100), ("b", 50)):  # a is older than b
        stamp = time.time() - age
        os.utime(shards[name] / MANIFEST, (stamp, stamp))
    found = cache.lookup("ns-a", _keys(50, 1)[:5])  # using a makes b the least recently used
    assert found.features is not None and found.positions == [0, 1, 2, 3, 4]
    assert torch.equal(found.features, torch.full((5, 8), 1.0))
    shard = cache.store("ns-c", {}, _keys(50, 3), torch.full((50, 8), 3))
    assert shard is not None and shard.exists() and shards["a"].exists()
    assert not shards["b"].exists()
    assert cache.stats["evictions"] == 1
    assert cache.total_bytes() <= cache.budget_bytes
    assert cache.lookup("ns-b", _keys(50, 2)).positions == []  # evicted: a miss


def test_a_job_stays_within_a_small_budget(
    tiny_bert_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNESERVE_FEATURE_CACHE_BYTES", "30000")  # about two small shards
    get_settings.cache_clear()
    for seed in range(3):
        cache = new_cache()
        run_job(tiny_bert_dir, *split(dataset(40, seed=20 + seed), seed=0), cache, epochs=1)
        assert cache.total_bytes() <= 30000
    assert cache.stats["evictions"] >= 1


def test_budget_zero_writes_nothing(
    tiny_bert_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNESERVE_FEATURE_CACHE_BYTES", "0")
    get_settings.cache_clear()
    cache = FeatureCache.from_settings()
    assert cache is None
    _, _, recorder = run_job(tiny_bert_dir, *split(dataset(), seed=0), cache)
    assert recorder.events["features_cached"]["cache_misses"] > 0
    assert not (data_dir / "features").exists()


def test_eviction_racing_readers_only_causes_misses(tmp_path: Path, data_dir: Path) -> None:
    keys = _keys(40, 7)
    expected = torch.arange(40 * 16, dtype=torch.float32).reshape(40, 16)
    one_shard = int(_shard_size(tmp_path, 40, 16) * 1.5)
    assert (
        FeatureCache(tmp_path / "features", one_shard // 2).store("ns", {}, keys, expected) is None
    )
    writer_cache = FeatureCache(tmp_path / "features", one_shard)
    reader = FeatureCache(tmp_path / "features", one_shard)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                writer_cache.store("ns", {}, keys, expected)  # each write evicts the previous
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=write)
    thread.start()
    hits = lookups = 0
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and (
            hits < 30 or lookups - hits < 5 or writer_cache.stats["evictions"] < 30
        ):
            found = reader.lookup("ns", keys)
            lookups += 1
            if found.features is not None:
                hits += 1
                torch.testing.assert_close(found.features, expected[found.positions])
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert reader.stats["rejected"] == 0 and writer_cache.stats["evictions"] > 0
    assert hits > 0


def test_contrastive_head_features_hit_on_an_identical_rerun(
    tiny_bert_dir: Path, data_dir: Path
) -> None:
    train, validation = split(dataset(8, seed=4), seed=0, validation_share=0.5)
    strategy = ContrastiveStrategy(num_pairs=16, pair_epochs=1)
    first, _, _ = run_job(tiny_bert_dir, train, validation, new_cache(), strategy=strategy)
    cache = new_cache()
    second, _, _ = run_job(tiny_bert_dir, train, validation, cache, strategy=strategy)
    # the tuned encoder is the same (same seed), so its features come from the cache
    assert cache.stats["hits"] == len(train) + len(validation)
    assert cache.stats["misses"] == 0
    assert torch.equal(head_weight(first), head_weight(second))


def test_counts_reach_the_fleet_counters(
    tiny_bert_dir: Path, data_dir: Path, redis_url: str
) -> None:
    import redis

    redis.Redis.from_url(f"{redis_url}/{COUNTER_DB}").delete(telemetry.COUNTERS_KEY)
    examples = dataset(10, seed=8)
    featurizer(tiny_bert_dir, new_cache()).features(examples)
    featurizer(tiny_bert_dir, new_cache()).features(examples)
    counters = telemetry.read_counters()
    assert counters["tuneserve_feature_cache_misses"] == len(examples)
    assert counters["tuneserve_feature_cache_hits"] == len(examples)
    assert counters["tuneserve_feature_cache_writes"] == 1
