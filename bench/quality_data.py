"""The data of ``bench/quality.py``: BBC News and Fine Foods, split into training and test
parts, stratified subsamples, and the strategies to run (see that module's docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sklearn.model_selection import train_test_split

from bench.bbc import bbc_splits


@dataclass
class Part:
    texts: list[str]
    labels: list[str]


def default_strategies() -> list[str]:
    """Every strategy the API accepts for text classification, cheapest first, and ``auto``
    (``zero_shot``, CLIP images only and untrained, is left out)."""
    from app.contract.strategies import STRATEGY_CONFIGS
    from app.contract.tasks import TEXT_CLASSIFICATION

    order = ["linear_probe", "contrastive", "lora", "partial", "gradual_unfreeze", "full"]
    names = [
        name
        for name, cls in STRATEGY_CONFIGS.items()
        if TEXT_CLASSIFICATION in cls.supported_tasks and not cls.needs_zero_shot
    ]
    known = [n for n in order if n in names]
    return [*known, *sorted(n for n in names if n not in known and n != "auto"), "auto"]


def load_data(name: str) -> tuple[Part, Part]:
    """``(train, test)`` with label names as labels."""
    if name == "bbc":
        bbc = bbc_splits()  # 80/20, stratified, random_state=0; "validation" is the 20%
        names = bbc.label_names
        train, test = bbc.train, bbc.validation
    elif name == "amazon":
        from bench.bench_strategies import amazon_splits

        train, test, names = amazon_splits(10**9, 10**9, 0)  # the whole of both sets
    else:
        raise SystemExit(f"unknown dataset {name!r} (bbc, amazon)")
    return (
        Part(list(train.texts), [names[i] for i in train.labels]),
        Part(list(test.texts), [names[i] for i in test.labels]),
    )


def subsample(part: Part, size: int | None) -> Part:
    """A stratified subsample of ``size`` rows (``random_state=0``); all of it for None."""
    if size is None or size >= len(part.texts):
        return part
    x, _, y, _ = train_test_split(
        part.texts, part.labels, train_size=size, stratify=part.labels, random_state=0
    )
    return Part(list(x), list(y))


def describe(train: Part, test: Part) -> dict[str, Any]:
    def counts(labels: list[str]) -> dict[str, int]:
        return {name: labels.count(name) for name in sorted(set(labels))}

    return {
        "train_rows": len(train.texts),
        "test_rows": len(test.texts),
        "train_label_counts": counts(train.labels),
        "test_label_counts": counts(test.labels),
    }
