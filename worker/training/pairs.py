"""Bounded, seeded sampling of positive and negative example pairs (SetFit-style).

``sample_pairs(labels, num_pairs, seed)`` returns at most ``num_pairs`` distinct unordered pairs
of example indices: ``num_pairs // 2`` positives (both examples share a label) and the rest
negatives (different labels), shuffled together. The O(n^2) set of all pairs is never built:

- examples are grouped by label once (O(n) memory, one stable argsort);
- a positive is drawn uniformly among all positive pairs by picking a class with weight
  ``n_c (n_c - 1)`` and two distinct members of it; a negative by picking a class ``a`` with
  weight ``n_a (n - n_a)``, a member of ``a`` and a member of any other class;
- duplicates are rejected through a set of at most ``num_pairs`` keys.

Each half is capped by how many distinct pairs of its kind exist (a class with one example
yields no positive; a tiny dataset yields every pair it has). When a half asks for more than
half of the pairs of its kind, those pairs (then fewer than ``2 * num_pairs``) are enumerated
and sampled without replacement, so rejection never degenerates into a coupon collector.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np


class Pair(NamedTuple):
    """Two example indices (``first < second``) and whether they share a label."""

    first: int
    second: int
    positive: bool

    @property
    def target(self) -> float:
        """The cosine similarity the pair is trained towards: 1.0 or 0.0."""
        return 1.0 if self.positive else 0.0


class _Groups:
    """Example indices grouped by label: class ``c`` is ``order[start[c] : start[c] + size[c]]``."""

    def __init__(self, labels: Sequence[int]) -> None:
        array = np.asarray(labels, dtype=np.int64)
        self.order: list[int] = np.argsort(array, kind="stable").tolist()
        _, counts = np.unique(array, return_counts=True)
        self.size: list[int] = counts.tolist()
        self.start: list[int] = [0, *itertools.accumulate(self.size)][:-1]
        self.n = len(self.order)

    def members(self, c: int) -> list[int]:
        return self.order[self.start[c] : self.start[c] + self.size[c]]


def _key(i: int, j: int) -> tuple[int, int]:
    return (i, j) if i < j else (j, i)


def _sample_distinct(
    target: int,
    available: int,
    draw: Iterator[tuple[int, int]],
    enumerate_all: Iterator[tuple[int, int]],
    rng: random.Random,
) -> list[tuple[int, int]]:
    """``min(target, available)`` distinct pairs: enumerated when that is most of them."""
    target = min(target, available)
    if target <= 0:
        return []
    if 2 * target >= available:  # bounded: available <= 2 * target
        return rng.sample(sorted(_key(i, j) for i, j in enumerate_all), target)
    seen: set[tuple[int, int]] = set()
    picked: list[tuple[int, int]] = []
    for i, j in draw:  # acceptance >= 1/2 per draw: at most ~2x target draws expected
        key = _key(i, j)
        if key not in seen:
            seen.add(key)
            picked.append(key)
            if len(picked) == target:
                break
    return picked


def sample_pairs(labels: Sequence[int], num_pairs: int, seed: int) -> list[Pair]:
    """At most ``num_pairs`` distinct pairs, half positive and half negative; see the module doc.

    ``labels`` are class indices (any ints); the result is deterministic for a ``seed``.
    """
    if num_pairs < 0:
        raise ValueError("num_pairs must be >= 0")
    rng = random.Random(seed)
    groups = _Groups(labels)
    n, size, start, order = groups.n, groups.size, groups.start, groups.order
    classes = range(len(size))

    positive_weights = list(itertools.accumulate(s * (s - 1) for s in size))
    negative_weights = list(itertools.accumulate(s * (n - s) for s in size))
    available_positive = positive_weights[-1] // 2 if size else 0
    available_negative = negative_weights[-1] // 2 if size else 0

    def pick_class(cumulative: list[int]) -> int:
        return bisect.bisect_right(cumulative, rng.randrange(cumulative[-1]))

    def draw_positive() -> Iterator[tuple[int, int]]:
        while True:
            c = pick_class(positive_weights)
            a, b = rng.sample(range(size[c]), 2)
            yield order[start[c] + a], order[start[c] + b]

    def draw_negative() -> Iterator[tuple[int, int]]:
        while True:
            c = pick_class(negative_weights)
            first = order[start[c] + rng.randrange(size[c])]
            position = rng.randrange(n - size[c])  # any position outside class c's block
            if position >= start[c]:
                position += size[c]
            yield first, order[position]

    def all_positive() -> Iterator[tuple[int, int]]:
        for c in classes:
            yield from itertools.combinations(groups.members(c), 2)

    def all_negative() -> Iterator[tuple[int, int]]:
        for a, b in itertools.combinations(classes, 2):
            yield from itertools.product(groups.members(a), groups.members(b))

    want_positive = num_pairs // 2
    positives = _sample_distinct(
        want_positive, available_positive, draw_positive(), all_positive(), rng
    )
    negatives = _sample_distinct(
        num_pairs - want_positive, available_negative, draw_negative(), all_negative(), rng
    )
    pairs = [Pair(i, j, True) for i, j in positives] + [Pair(i, j, False) for i, j in negatives]
    rng.shuffle(pairs)
    return pairs
