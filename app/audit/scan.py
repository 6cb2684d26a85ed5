"""The audit's one pass over each dataset: label counts, duplicate texts, overlaps between
training, validation and test, and a seeded sample of training texts for token counts.

Texts are compared as the dataset report compares them (:mod:`app.datasets.duplicates`:
whitespace runs collapsed, casefolded; for text pairs the key is the pair) by 16-byte
digests, so memory stays near 100 bytes a row.
Image datasets are compared by their stored images' bytes (the canonical PNG copies) and shown
by their file names in the upload; they have no token counts.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.audit.tokens import TextPair, count_tokens, within_budget
from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS, PAIR_TASK
from app.datasets.duplicates import duplicate_key

#: example texts shown (duplicates, overlaps), each cut to this many characters
MAX_EXAMPLES = 5
EXAMPLE_CHARS = 80
#: texts sampled (seeded) for token counts
TOKEN_SAMPLE = 2000
TOKEN_SAMPLE_SEED = 0
_BATCH_ROWS = 8192
_IMAGE_BATCH_ROWS = 256
#: marks an image row's "text": the digest of its bytes, then its file name
IMAGE_MARK = "\x00image:"


@dataclass(frozen=True)
class Overlap:
    """Rows of ``split`` whose text also occurs in ``against``."""

    split: str
    against: str
    dataset_id: str
    rows: int
    of: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Scan:
    rows: int
    label_counts: dict[str, int]
    duplicate_rows: int  # rows whose normalised text repeats an earlier row's
    repeated_texts: int  # distinct normalised texts occurring more than once
    duplicate_examples: tuple[str, ...]
    overlaps: tuple[Overlap, ...]
    token_counts: tuple[int, ...]
    counting: str  # "tokenizer" or "estimate"
    cut_texts: int  # sampled texts cut to the character cap before counting


@dataclass(frozen=True)
class Source:
    """A dataset's canonical Parquet file."""

    dataset_id: str
    path: Path


@dataclass(frozen=True)
class ScanRequest:
    """What to read; equal requests give equal scans (a sweep reuses one)."""

    task: str
    train: Source
    validation: Source | None
    test: Source | None
    tokenizer_file: Path | None
    char_cap: int


def _digest(text: str, pair: str | None) -> bytes:
    if text.startswith(IMAGE_MARK):  # an image: its bytes' digest, whatever its file name
        return bytes.fromhex(text[len(IMAGE_MARK) :].split(" ", 1)[0])
    return duplicate_key(text, pair)


def _shown(text: str, pair: str | None) -> str:
    if text.startswith(IMAGE_MARK):
        text = text.split(" ", 1)[1]  # the image's file name in the upload
    full = text if pair is None else f"{text} || {pair}"
    full = " ".join(full.split())
    return full if len(full) <= EXAMPLE_CHARS else full[: EXAMPLE_CHARS - 1] + "…"


def _rows(
    path: Path,
    *,
    pair: bool,
    label: str | None = None,
    counts: Counter[str] | None = None,
    image: bool = False,
) -> Iterator[TextPair]:
    """``(text, text_pair)`` of each row, in order; label occurrences added to ``counts``.
    An image row's "text" is its digest and file name (:data:`IMAGE_MARK`)."""
    first = ["image", "source"] if image else ["text", *(["text_pair"] if pair else [])]
    columns = [*first, *([label] if label else [])]
    with pq.ParquetFile(path) as pf:
        for batch in pf.iter_batches(
            batch_size=_IMAGE_BATCH_ROWS if image else _BATCH_ROWS, columns=columns
        ):
            if label and counts is not None:
                values = batch.column(label)
                if label == "labels":
                    values = pc.list_flatten(values)
                for item in pc.value_counts(values).to_pylist():
                    if item["values"] is not None:
                        counts[str(item["values"])] += int(item["counts"])
            if image:
                sources = batch.column("source").to_pylist()
                for data, source in zip(batch.column("image").to_pylist(), sources, strict=True):
                    digest = hashlib.blake2b(data or b"", digest_size=16).hexdigest()
                    yield f"{IMAGE_MARK}{digest} {source}", None
                continue
            texts = batch.column("text").to_pylist()
            pairs = batch.column("text_pair").to_pylist() if pair else [None] * len(texts)
            for text, other in zip(texts, pairs, strict=True):
                yield str(text or ""), (str(other or "") if pair else None)


def _overlaps(
    source: Source,
    split: str,
    *,
    pair: bool,
    against: list[tuple[str, set[bytes]]],
    keep: bool,
    image: bool = False,
) -> tuple[set[bytes], list[Overlap]]:
    own: set[bytes] = set()
    hits = [0] * len(against)
    examples: list[list[str]] = [[] for _ in against]
    rows = 0
    for text, other in _rows(source.path, pair=pair, image=image):
        rows += 1
        key = _digest(text, other)
        for i, (_, keys) in enumerate(against):
            if key in keys:
                hits[i] += 1
                shown = _shown(text, other)
                if len(examples[i]) < MAX_EXAMPLES and shown not in examples[i]:
                    examples[i].append(shown)
        if keep:
            own.add(key)
    found = [
        Overlap(split, name, source.dataset_id, hits[i], rows, tuple(examples[i]))
        for i, (name, _) in enumerate(against)
        if hits[i]
    ]
    return own, found


def scan(req: ScanRequest) -> Scan:
    """One pass over each file: label counts, duplicates, overlaps, a token-count sample."""
    pair = req.task == PAIR_TASK
    image = req.task in IMAGE_TASKS
    label = "labels" if req.task in MULTILABEL_TASKS else "label"
    with pq.ParquetFile(req.train.path) as pf:
        n = pf.metadata.num_rows
    order = random.Random(TOKEN_SAMPLE_SEED).sample(range(n), min(n, TOKEN_SAMPLE))
    rank = {row: i for i, row in enumerate(order)}
    sample: dict[int, TextPair] = {}
    counts: Counter[str] = Counter()
    seen: set[bytes] = set()
    repeated: set[bytes] = set()
    dup_examples: list[str] = []
    duplicates = cut = 0
    rows = _rows(req.train.path, pair=pair, label=label, counts=counts, image=image)
    for index, (text, other) in enumerate(rows):
        key = _digest(text, other)
        if key in seen:
            duplicates += 1
            repeated.add(key)
            if len(dup_examples) < MAX_EXAMPLES and _shown(text, other) not in dup_examples:
                dup_examples.append(_shown(text, other))
        else:
            seen.add(key)
        if index in rank and not image:
            cut += len(text) > req.char_cap or len(other or "") > req.char_cap
            sample[rank[index]] = (
                text[: req.char_cap],
                None if other is None else other[: req.char_cap],
            )
    overlaps: list[Overlap] = []
    val_keys: set[bytes] = set()
    if req.validation is not None:
        val_keys, found = _overlaps(
            req.validation,
            "validation",
            pair=pair,
            against=[("training", seen)],
            keep=req.test is not None,
            image=image,
        )
        overlaps += found
    if req.test is not None:
        against = [("training", seen)] + ([("validation", val_keys)] if req.validation else [])
        test = _overlaps(req.test, "test", pair=pair, against=against, keep=False, image=image)
        overlaps += test[1]
    token_counts, counting = (
        ((), "none") if image else count_tokens(within_budget(sample), req.tokenizer_file)
    )
    return Scan(
        rows=n,
        label_counts=dict(counts),
        duplicate_rows=duplicates,
        repeated_texts=len(repeated),
        duplicate_examples=tuple(dup_examples),
        overlaps=tuple(overlaps),
        token_counts=tuple(token_counts),
        counting=counting,
        cut_texts=cut,
    )
