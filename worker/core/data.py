"""Examples in, padded tensor batches out.

Each split is tokenized once (truncated, unpadded); a batch is padded to its longest member
(dynamic padding). The order of the training split comes from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from app.contract.tasks import MULTILABEL_TASKS, PAIR_TASK

#: a batch: model inputs (``input_ids``, ``attention_mask``, ...) and the label tensor
Batch = tuple[dict[str, torch.Tensor], torch.Tensor]


@dataclass
class Examples:
    """One split of a dataset, with labels as indices into the job's label names: texts, or
    images (``texts`` empty) for the image tasks."""

    texts: list[str]
    #: class index (single-label) or list of label indices (multi-label tasks)
    labels: list[int] | list[list[int]]
    #: second text of each pair (text-pair-classification); tokenized as a pair
    text_pairs: list[str] | None = None
    #: image tasks: each example's stored image (PNG bytes of an RGB copy)
    images: list[bytes] | None = None

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.texts)


def effective_max_length(tokenizer: Any, requested: int, model_config: Any = None) -> int:
    """``requested`` capped by the tokenizer's and the model's own maximum."""
    limits = [requested]
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 10**9:
        limits.append(model_max)
    positions = getattr(model_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits)


def validate_examples(examples: Examples, *, task: str, num_labels: int, split: str) -> None:
    """Raise ``ValueError`` when a split does not fit the task or the label set."""
    if len(examples.labels) != len(examples):
        what = "images" if examples.images is not None else "texts"
        raise ValueError(f"{split}: {len(examples)} {what} but {len(examples.labels)} labels")
    pairs = examples.text_pairs
    if task == PAIR_TASK and (pairs is None or len(pairs) != len(examples.texts)):
        raise ValueError(f"{split}: text-pair-classification needs one text_pair per text")
    for label in examples.labels:
        indices = label if isinstance(label, list) else [label]
        if (task in MULTILABEL_TASKS) != isinstance(label, list):
            kind = "a list of label indices" if task in MULTILABEL_TASKS else "one class index"
            raise ValueError(f"{split}: task {task} takes {kind} per example, got {label!r}")
        if any(not 0 <= index < num_labels for index in indices):
            raise ValueError(f"{split}: label index out of range 0..{num_labels - 1}: {label}")


def label_tensor(examples: Examples, *, multilabel: bool, num_labels: int) -> torch.Tensor:
    """Class indices (``long``) or multi-hot rows (``float``)."""
    if not multilabel:
        return torch.tensor(examples.labels, dtype=torch.long)
    targets = torch.zeros(len(examples.labels), num_labels, dtype=torch.float32)
    for row, indices in enumerate(examples.labels):
        assert isinstance(indices, list)
        targets[row, indices] = 1.0
    return targets


class TokenizedExamples(Dataset[tuple[dict[str, list[int]], torch.Tensor]]):
    """A split tokenized once, truncated but not padded."""

    def __init__(self, encodings: dict[str, Sequence[list[int]]], labels: torch.Tensor) -> None:
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[dict[str, list[int]], torch.Tensor]:
        return {key: values[index] for key, values in self.encodings.items()}, self.labels[index]


def tokenize_examples(
    examples: Examples, tokenizer: Any, *, max_length: int, multilabel: bool, num_labels: int
) -> TokenizedExamples:
    encodings = tokenizer(
        examples.texts, examples.text_pairs, truncation=True, max_length=max_length
    )
    labels = label_tensor(examples, multilabel=multilabel, num_labels=num_labels)
    return TokenizedExamples(dict(encodings), labels)


def make_loader(
    dataset: TokenizedExamples,
    tokenizer: Any,
    *,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> DataLoader[Any]:
    """Batches padded to their longest member; shuffled by ``generator`` when one is given."""

    def collate(items: list[tuple[dict[str, list[int]], torch.Tensor]]) -> Batch:
        features = [features for features, _ in items]
        padded = tokenizer.pad(features, padding="longest", return_tensors="pt")
        return dict(padded), torch.stack([label for _, label in items])

    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=generator is not None,
        generator=generator,
        collate_fn=collate,
    )


def move_batch(inputs: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in inputs.items()}


class Cycled:
    """``steps`` batches drawn from ``loader`` pass after pass (each pass in a new order), as
    one sized iterable: a fixed number of steps over a set of any size (dapt's MLM phase)."""

    def __init__(self, loader: DataLoader[Any], steps: int) -> None:
        self.loader = loader
        self.steps = steps
        #: the loader's shuffling generator: ``fit`` saves and restores its state
        self.generator = loader.generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(cycle_passes(self.loader), self.steps)


def cycle_passes(loader: Iterable[Any]) -> Iterator[Any]:
    """Every batch of ``loader``, pass after pass, forever (a new shuffled pass each time)."""
    while True:
        yield from loader
