"""Examples in, padded tensor batches out.

Each split is tokenized once (unpadded; texts beyond ``max_length`` read as the job's
``long_text`` says, :mod:`worker.core.long_text`); a batch is padded to its longest member
(dynamic padding). The order of the training split comes from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from app.contract.tasks import MULTILABEL_TASKS, PAIR_TASK
from worker.core.long_text import TRUNCATE, WINDOWS, LongText, Windows, encode_windows

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


#: one example's tokens: a window's features, or (``chunks``) the list of its windows' features
ExampleTokens = dict[str, list[int]] | list[dict[str, list[int]]]


class TokenizedExamples(Dataset[tuple[ExampleTokens, torch.Tensor]]):
    """A split tokenized once, truncated but not padded: one window per example, or with
    ``counts`` (``long_text: chunks``) ``counts[i]`` consecutive windows for example ``i``."""

    def __init__(
        self,
        encodings: Mapping[str, Sequence[list[int]]],
        labels: torch.Tensor,
        counts: Sequence[int] | None = None,
    ) -> None:
        self.encodings = encodings
        self.labels = labels
        #: where each example's windows start (None: window i is example i)
        self.starts: list[int] | None = None
        if counts is not None and any(count != 1 for count in counts):
            self.starts = [0, *itertools.accumulate(counts)]

    def __len__(self) -> int:
        return len(self.labels)

    def _window(self, index: int) -> dict[str, list[int]]:
        return {key: values[index] for key, values in self.encodings.items()}

    def __getitem__(self, index: int) -> tuple[ExampleTokens, torch.Tensor]:
        if self.starts is None:
            return self._window(index), self.labels[index]
        windows = range(self.starts[index], self.starts[index + 1])
        return [self._window(window) for window in windows], self.labels[index]


def tokenize_examples(
    examples: Examples,
    tokenizer: Any,
    *,
    max_length: int,
    multilabel: bool,
    num_labels: int,
    long_text: LongText = TRUNCATE,
) -> TokenizedExamples:
    windows = encode_windows(
        tokenizer,
        examples.texts,
        examples.text_pairs,
        max_length=max_length,
        long_text=long_text,
    )
    labels = label_tensor(examples, multilabel=multilabel, num_labels=num_labels)
    return TokenizedExamples(windows.encodings, labels, windows.counts)


def pad_examples(tokenizer: Any, features: list[ExampleTokens]) -> dict[str, torch.Tensor]:
    """Model inputs of examples, padded to the longest window; examples read in several
    windows are flattened, with each one's number of windows under ``WINDOWS``."""
    if not any(isinstance(item, list) for item in features):
        return dict(tokenizer.pad(features, padding="longest", return_tensors="pt"))
    nested = [item if isinstance(item, list) else [item] for item in features]
    flat = [window for windows in nested for window in windows]
    padded = dict(tokenizer.pad(flat, padding="longest", return_tensors="pt"))
    padded[WINDOWS] = torch.tensor([len(windows) for windows in nested], dtype=torch.long)
    return padded


def windows_batch(tokenizer: Any, windows: Windows) -> dict[str, torch.Tensor]:
    """The padded model inputs of encoded texts (:func:`pad_examples`)."""
    data = TokenizedExamples(windows.encodings, torch.zeros(len(windows.counts)), windows.counts)
    return pad_examples(tokenizer, [data[i][0] for i in range(len(data))])


def make_loader(
    dataset: TokenizedExamples,
    tokenizer: Any,
    *,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> DataLoader[Any]:
    """Batches padded to their longest member; shuffled by ``generator`` when one is given."""

    def collate(items: list[tuple[ExampleTokens, torch.Tensor]]) -> Batch:
        padded = pad_examples(tokenizer, [features for features, _ in items])
        return padded, torch.stack([label for _, label in items])

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
