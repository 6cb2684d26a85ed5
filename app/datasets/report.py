"""The validation report of an uploaded dataset, and the statistics gathered to build it.

The report is plain JSON (``model_dump()``): stored on the dataset row and returned as the
``details`` of a ``dataset_invalid`` error.
"""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from app.datasets.duplicates import duplicate_key

#: warn about imbalance when the largest class has this many times the smallest one's examples
IMBALANCE_RATIO = 10.0
#: column names are kept to this many characters in the report
COLUMN_NAME_CHARS = 200

Label = str | tuple[str, ...]


class LengthStats(BaseModel):
    """Lengths in characters (Unicode code points) over the kept rows; zeros when none."""

    min: int = 0
    max: int = 0
    mean: float = 0.0
    p50: int = 0
    p95: int = 0

    @classmethod
    def of(cls, lengths: array[int]) -> LengthStats:
        if not lengths:
            return cls()
        arr = pa.Array.from_buffers(pa.uint32(), len(lengths), [None, pa.py_buffer(lengths)])
        q = pc.quantile(arr, q=[0.5, 0.95], interpolation="higher").to_pylist()
        return cls(
            min=min(lengths),
            max=max(lengths),
            mean=round(pc.mean(arr).as_py(), 2),
            p50=int(q[0]),
            p95=int(q[1]),
        )


class ValidationReport(BaseModel):
    format: Literal["csv", "jsonl", "parquet"]
    rows: int = Field(0, description="Rows kept in the canonical table.")
    rows_read: int = Field(0, description="Data rows read from the file (blank lines skipped).")
    columns: list[str] = Field(default_factory=list, description="Columns found in the file.")
    label_counts: dict[str, int] = Field(
        default_factory=dict,
        description="Examples per label, most frequent first (multilabel: occurrences).",
    )
    num_labels: int = 0
    empty_or_missing: dict[str, int] = Field(
        default_factory=dict,
        description="Per mapped source column: rows where its value was missing or empty.",
    )
    dropped_rows: int = Field(0, description="Rows dropped for a missing or empty value.")
    duplicate_texts: int = Field(
        0, description="Kept rows whose text (and text_pair) repeats an earlier row; kept."
    )
    conflicting_duplicates: int = Field(
        0, description="Duplicates whose label differs from the first occurrence's."
    )
    text_length: LengthStats = Field(default_factory=LengthStats)
    text_pair_length: LengthStats | None = None
    small_classes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class StatsCollector:
    """Counts what ingest sees, row by row, in bounded memory per row (a 16-byte hash of each
    kept text for duplicate detection, 4 bytes per length)."""

    def __init__(self, *, labelled: bool, has_pair: bool) -> None:
        self.labelled = labelled
        self.has_pair = has_pair
        self.rows_read = 0
        self.rows = 0
        self.dropped = 0
        self.empty_or_missing: Counter[str] = Counter()
        self.label_counts: Counter[str] = Counter()
        self.empty_label_sets = 0
        self.duplicates = 0
        self.conflicts = 0
        self._first_label: dict[bytes, Label | None] = {}
        self._text_lengths: array[int] = array("I")
        self._pair_lengths: array[int] = array("I")

    def drop(self, missing_columns: list[str]) -> None:
        self.dropped += 1
        self.empty_or_missing.update(missing_columns)

    def keep(self, text: str, pair: str | None, label: Label | None) -> None:
        self.rows += 1
        self._text_lengths.append(len(text))
        if pair is not None:
            self._pair_lengths.append(len(pair))
        digest = duplicate_key(text, pair)
        if digest in self._first_label:
            self.duplicates += 1
            if self._first_label[digest] != label:
                self.conflicts += 1
        else:
            self._first_label[digest] = label
        if isinstance(label, tuple):
            self.label_counts.update(label)
            self.empty_label_sets += not label
        elif label is not None:
            self.label_counts[label] += 1

    def report(
        self,
        *,
        fmt: Literal["csv", "jsonl", "parquet"],
        columns: list[str],
        mapped: list[str],
        min_examples: int,
        errors: list[str],
    ) -> ValidationReport:
        counts = dict(sorted(self.label_counts.items(), key=lambda kv: (-kv[1], kv[0])))
        small = sorted(name for name, n in counts.items() if n < min_examples)
        report = ValidationReport(
            format=fmt,
            rows=self.rows,
            rows_read=self.rows_read,
            columns=[name[:COLUMN_NAME_CHARS] for name in columns],
            label_counts=counts,
            num_labels=len(counts),
            empty_or_missing={name: self.empty_or_missing[name] for name in mapped},
            dropped_rows=self.dropped,
            duplicate_texts=self.duplicates,
            conflicting_duplicates=self.conflicts,
            text_length=LengthStats.of(self._text_lengths),
            text_pair_length=LengthStats.of(self._pair_lengths) if self.has_pair else None,
            small_classes=small,
            errors=errors,
        )
        report.warnings = self._warnings(report, min_examples)
        return report

    def _warnings(self, r: ValidationReport, min_examples: int) -> list[str]:
        out = dropped_rows_warning(r.dropped_rows, r.rows_read, r.empty_or_missing)
        if r.duplicate_texts:
            out.append(f"{r.duplicate_texts} rows repeat the text of an earlier row (kept)")
        if r.conflicting_duplicates:
            out.append(
                f"{r.conflicting_duplicates} duplicate texts have a different label than their "
                "first occurrence"
            )
        out += class_warnings(r.label_counts, r.small_classes, min_examples, noun="examples")
        if self.labelled and r.rows >= 20 and r.num_labels > r.rows // 2:
            out.append(
                f"{r.num_labels} distinct labels for {r.rows} rows: is the label column right?"
            )
        if self.empty_label_sets:
            out.append(f"{self.empty_label_sets} rows have an empty label list (kept: no labels)")
        return out


def dropped_rows_warning(dropped: int, read: int, empty_or_missing: dict[str, int]) -> list[str]:
    """The warning for rows dropped for a missing value, if any (tables and image zips)."""
    if not dropped:
        return []
    per_column = ", ".join(f"{k}: {v}" for k, v in empty_or_missing.items() if v)
    return [
        f"{dropped} of {read} rows dropped because a required value was missing or empty "
        f"({per_column})"
    ]


def class_warnings(
    label_counts: dict[str, int], small_classes: list[str], min_examples: int, *, noun: str
) -> list[str]:
    """Warnings for too small classes and a strong imbalance (``label_counts`` most frequent
    first); ``noun`` counts the examples (``examples``, ``images``)."""
    out: list[str] = []
    if small_classes:
        shown = ", ".join(repr(c) for c in small_classes[:20])
        more = f" and {len(small_classes) - 20} more" if len(small_classes) > 20 else ""
        out.append(f"classes with fewer than {min_examples} {noun}: {shown}{more}")
    if len(label_counts) >= 2:
        (big, most), (little, least) = (
            next(iter(label_counts.items())),
            list(label_counts.items())[-1],
        )
        if most >= IMBALANCE_RATIO * least:
            out.append(
                f"classes are imbalanced: {big!r} has {most} {noun}, {little!r} has "
                f"{least} ({most / least:.0f}:1)"
            )
    return out
