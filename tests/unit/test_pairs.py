"""Bounded pair sampling: labels respected, balanced, seeded, distinct, never O(n^2)."""

from __future__ import annotations

import random
import time
import tracemalloc
from collections import Counter

import pytest

from worker.training.pairs import Pair, sample_pairs


def _labels(n: int, classes: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(classes) for _ in range(n)]


def _check(pairs: list[Pair], labels: list[int]) -> None:
    keys = [(pair.first, pair.second) for pair in pairs]
    assert len(set(keys)) == len(keys), "pairs are distinct"
    for pair in pairs:
        assert pair.first < pair.second
        assert (labels[pair.first] == labels[pair.second]) == pair.positive
        assert pair.target == (1.0 if pair.positive else 0.0)


def test_positives_share_labels_negatives_do_not_and_halves_balance() -> None:
    labels = _labels(500, 5)
    pairs = sample_pairs(labels, 400, seed=1)
    _check(pairs, labels)
    assert Counter(pair.positive for pair in pairs) == {True: 200, False: 200}
    odd = sample_pairs(labels, 401, seed=1)
    assert Counter(pair.positive for pair in odd) == {True: 200, False: 201}
    # shuffled together, not all positives first
    assert any(pair.positive for pair in pairs[:50]) and not all(p.positive for p in pairs[:50])


def test_deterministic_for_a_seed() -> None:
    labels = _labels(1000, 3)
    assert sample_pairs(labels, 300, seed=7) == sample_pairs(labels, 300, seed=7)
    assert sample_pairs(labels, 300, seed=7) != sample_pairs(labels, 300, seed=8)


def test_bounded_time_and_memory_for_200k_labels() -> None:
    labels = _labels(200_000, 10)  # ~2e10 pairs exist: building them would not fit in memory
    tracemalloc.start()
    started = time.perf_counter()
    try:
        pairs = sample_pairs(labels, 2000, seed=0)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(pairs) == 2000
    _check(pairs, labels)
    assert seconds < 10.0  # well under 1 s untraced; generous for busy machines and tracing
    assert peak < 100 * 2**20  # O(n) bookkeeping only (n^2 pairs would be hundreds of GiB)


@pytest.mark.parametrize(
    "labels",
    [
        [0] * 199_999 + [1],  # one huge class: negatives are rare among random draws
        list(range(200_000)),  # every class a singleton: no positive exists at all
    ],
)
def test_skewed_200k_labels_stay_fast(labels: list[int]) -> None:
    started = time.perf_counter()
    pairs = sample_pairs(labels, 2000, seed=0)
    assert time.perf_counter() - started < 10.0
    _check(pairs, labels)
    positives = sum(pair.positive for pair in pairs)
    assert positives == (1000 if labels[1] == 0 else 0)
    assert len(pairs) - positives == 1000


def test_tiny_dataset_returns_every_pair_that_exists() -> None:
    labels = [0, 0, 0, 1, 2]  # positives: 3 (all from class 0); negatives: 10 - 3 = 7
    pairs = sample_pairs(labels, 100, seed=0)
    _check(pairs, labels)
    assert sorted((p.first, p.second) for p in pairs if p.positive) == [(0, 1), (0, 2), (1, 2)]
    assert sum(not pair.positive for pair in pairs) == 7
    assert len(pairs) == 10


def test_singleton_classes_yield_no_positive_from_them() -> None:
    labels = [0, 1, 1, 2, 3, 3, 3]
    pairs = sample_pairs(labels, 1000, seed=3)
    _check(pairs, labels)
    for pair in pairs:
        if pair.positive:
            assert labels[pair.first] in {1, 3}
    assert sum(pair.positive for pair in pairs) == 1 + 3


def test_near_exhaustive_request_samples_without_replacement() -> None:
    labels = _labels(60, 2, seed=4)
    counts = Counter(labels)
    available = sum(c * (c - 1) // 2 for c in counts.values())
    pairs = sample_pairs(labels, 2 * (available - 1), seed=0)  # all positives but one
    assert sum(pair.positive for pair in pairs) == available - 1
    _check(pairs, labels)


def test_edge_cases() -> None:
    assert sample_pairs([], 10, seed=0) == []
    assert sample_pairs([1, 1, 1], 0, seed=0) == []
    assert sample_pairs([5], 10, seed=0) == []
    assert sample_pairs([5, 9], 10, seed=0) == [Pair(0, 1, False)]
    with pytest.raises(ValueError):
        sample_pairs([0, 1], -1, seed=0)
