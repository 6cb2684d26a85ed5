"""The validation report of an image dataset, and the statistics gathered to build it.

Its fields are those of the text report (:mod:`app.datasets.report`) where they mean the same
(``rows``, ``rows_read``, ``columns``, ``label_counts``, ``num_labels``, ``empty_or_missing``,
``dropped_rows``, ``conflicting_duplicates``, ``small_classes``, ``warnings``, ``errors``),
plus ``layout`` and an ``images`` section. Per image, the API keeps about 60 bytes (its
duplicate key, its width and height) while it reads.
"""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from app.datasets.report import class_warnings, dropped_rows_warning

#: corrupt files, duplicate pairs and ignored members listed in the report (the first ones)
SHOWN = 20
DUPLICATE_KEY = "sha256 of the decoded RGB pixels and the size"

Layout = Literal["folders", "labels.csv", "labels.jsonl"]
Label = str | tuple[str, ...]


class SideStats(BaseModel):
    """Pixels of one side over the decoded images; zeros when none (median: the upper one)."""

    min: int = 0
    median: int = 0
    max: int = 0

    @classmethod
    def of(cls, values: array[int]) -> SideStats:
        if not values:
            return cls()
        ordered = sorted(values)
        return cls(min=ordered[0], median=ordered[len(ordered) // 2], max=ordered[-1])


class CorruptFile(BaseModel):
    name: str
    reason: str


class ImageSection(BaseModel):
    files: int = Field(0, description="Image files to store: decoded plus corrupt.")
    decoded: int = 0
    corrupt: int = Field(0, description="Files that could not be decoded (dropped).")
    corrupt_share: float = 0.0
    corrupt_files: list[CorruptFile] = Field(default_factory=list, description="The first 20.")
    width: SideStats = Field(default_factory=SideStats)
    height: SideStats = Field(default_factory=SideStats)
    modes: dict[str, int] = Field(
        default_factory=dict, description="Original Pillow modes, most frequent first."
    )
    converted_to_rgb: int = Field(0, description="Images whose mode was not RGB.")
    duplicates: int = Field(0, description="Images repeating an earlier one's content (kept).")
    duplicate_key: str = DUPLICATE_KEY
    duplicate_examples: list[list[str]] = Field(
        default_factory=list, description="The first 20 pairs [first occurrence, repeat]."
    )
    ignored_files: int = Field(
        0, description="Members never read: not images, hidden, or images no row names."
    )
    ignored_examples: list[str] = Field(default_factory=list)
    unlisted_images: int = Field(0, description="Images no row of the labels file names.")
    stored_max_side: int = 0


class ImageValidationReport(BaseModel):
    format: Literal["zip"] = "zip"
    layout: Layout | None = None
    rows: int = Field(0, description="Images kept in the canonical table.")
    rows_read: int = Field(0, description="Image files (folders) or labels-file rows read.")
    columns: list[str] = Field(default_factory=list, description="The labels file's columns.")
    label_counts: dict[str, int] = Field(default_factory=dict)
    num_labels: int = 0
    empty_or_missing: dict[str, int] = Field(default_factory=dict)
    dropped_rows: int = Field(0, description="Labels-file rows without an image or a label.")
    conflicting_duplicates: int = 0
    small_classes: list[str] = Field(default_factory=list)
    images: ImageSection = Field(default_factory=ImageSection)
    warnings: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class ImageStats:
    """Counts what ingest sees, image by image."""

    def __init__(self, *, store_max_side: int) -> None:
        self.layout: Layout | None = None
        self.columns: list[str] = []
        self.rows_read = 0
        self.dropped = 0
        self.empty_or_missing: Counter[str] = Counter()
        self.mapped: list[str] = []
        self.label_counts: Counter[str] = Counter()
        self.empty_label_sets = 0
        self.conflicts = 0
        self.section = ImageSection(stored_max_side=store_max_side)
        self._first: dict[bytes, tuple[str, Label]] = {}
        self._widths: array[int] = array("I")
        self._heights: array[int] = array("I")
        self._modes: Counter[str] = Counter()

    def drop(self, missing_columns: list[str]) -> None:
        self.dropped += 1
        self.empty_or_missing.update(missing_columns)

    def ignore(self, names: list[str], *, unlisted: int = 0) -> None:
        self.section.ignored_files += len(names)
        self.section.ignored_examples += names[: SHOWN - len(self.section.ignored_examples)]
        self.section.unlisted_images += unlisted

    def count_label(self, label: Label) -> None:
        if isinstance(label, tuple):
            self.label_counts.update(label)
            self.empty_label_sets += not label
        else:
            self.label_counts[label] += 1

    def corrupt(self, name: str, reason: str) -> None:
        s = self.section
        s.files += 1
        s.corrupt += 1
        if len(s.corrupt_files) < SHOWN:
            s.corrupt_files.append(CorruptFile(name=name, reason=reason))

    def keep(
        self, name: str, label: Label, *, width: int, height: int, mode: str, digest: bytes
    ) -> None:
        s = self.section
        s.files += 1
        s.decoded += 1
        self._widths.append(width)
        self._heights.append(height)
        self._modes[mode] += 1
        s.converted_to_rgb += mode != "RGB"
        first = self._first.get(digest)
        if first is None:
            self._first[digest] = (name, label)
        else:
            s.duplicates += 1
            if len(s.duplicate_examples) < SHOWN:
                s.duplicate_examples.append([first[0], name])
            if first[1] != label:
                self.conflicts += 1
        self.count_label(label)

    def report(self, *, min_examples: int, errors: list[str]) -> ImageValidationReport:
        s = self.section
        s.corrupt_share = round(s.corrupt / s.files, 4) if s.files else 0.0
        s.width, s.height = SideStats.of(self._widths), SideStats.of(self._heights)
        s.modes = dict(sorted(self._modes.items(), key=lambda kv: (-kv[1], kv[0])))
        counts = dict(sorted(self.label_counts.items(), key=lambda kv: (-kv[1], kv[0])))
        report = ImageValidationReport(
            layout=self.layout,
            rows=s.decoded,
            rows_read=self.rows_read,
            columns=self.columns,
            label_counts=counts,
            num_labels=len(counts),
            empty_or_missing={name: self.empty_or_missing[name] for name in self.mapped},
            dropped_rows=self.dropped,
            conflicting_duplicates=self.conflicts,
            small_classes=sorted(name for name, n in counts.items() if n < min_examples),
            images=s,
            errors=errors,
        )
        report.warnings = self._warnings(report, min_examples)
        return report

    def _warnings(self, r: ImageValidationReport, min_examples: int) -> list[str]:
        out: list[str] = []
        s = r.images
        if s.corrupt:
            shown = ", ".join(repr(c.name) for c in s.corrupt_files[:5])
            out.append(f"{s.corrupt} of {s.files} images cannot be decoded (dropped): {shown}")
        out += dropped_rows_warning(r.dropped_rows, r.rows_read, r.empty_or_missing)
        if s.duplicates:
            out.append(f"{s.duplicates} images repeat the content of an earlier one (kept)")
        if r.conflicting_duplicates:
            out.append(
                f"{r.conflicting_duplicates} duplicate images have a different label than their "
                "first occurrence"
            )
        out += class_warnings(r.label_counts, r.small_classes, min_examples, noun="images")
        if s.unlisted_images:
            out.append(
                f"{s.unlisted_images} images in the zip are not in the labels file (ignored)"
            )
        if s.ignored_files - s.unlisted_images > 0:
            out.append(
                f"{s.ignored_files - s.unlisted_images} members are not images and were ignored"
            )
        if self.empty_label_sets:
            out.append(f"{self.empty_label_sets} images have an empty label list (kept: no labels)")
        return out
