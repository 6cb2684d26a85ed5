"""Canonical Parquet → training and validation examples (stratified, seeded split)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, cast

import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS, PAIR_TASK
from worker.core.data import Examples


def read_examples(path: Path, *, task: str, label_names: list[str]) -> Examples:
    table = pq.read_table(path)
    index = {name: i for i, name in enumerate(label_names)}
    images = table.column("image").to_pylist() if task in IMAGE_TASKS else None
    texts = [] if images is not None else [str(t) for t in table.column("text").to_pylist()]
    pairs = [str(t) for t in table.column("text_pair").to_pylist()] if task == PAIR_TASK else None
    labels: list[int] | list[list[int]]
    if task in MULTILABEL_TASKS:
        labels = [sorted(index[x] for x in row) for row in table.column("labels").to_pylist()]
    else:
        labels = [index[x] for x in table.column("label").to_pylist()]
    return Examples(texts=texts, labels=labels, text_pairs=pairs, images=images)


def subset(examples: Examples, indices: list[int]) -> Examples:
    labels: Any = [examples.labels[i] for i in indices]
    images = examples.images
    return Examples(
        texts=[examples.texts[i] for i in indices] if images is None else [],
        labels=labels,
        text_pairs=[examples.text_pairs[i] for i in indices] if examples.text_pairs else None,
        images=[images[i] for i in indices] if images is not None else None,
    )


def split(
    examples: Examples, *, fraction: float, seed: int, task: str
) -> tuple[Examples, Examples]:
    """Hold out ``fraction`` of the rows, stratified by label where every class allows it."""
    indices = list(range(len(examples)))
    stratify = None
    if task not in MULTILABEL_TASKS:
        counts = Counter(cast(list[int], examples.labels))
        n_val = max(1, round(len(indices) * fraction))
        if min(counts.values()) >= 2 and n_val >= len(counts):
            stratify = examples.labels
    train_idx, val_idx = train_test_split(
        indices, test_size=fraction, random_state=seed, shuffle=True, stratify=stratify
    )
    return subset(examples, sorted(train_idx)), subset(examples, sorted(val_idx))
