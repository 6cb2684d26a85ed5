"""Which image has which label(s): the zip's layout, turned into rows before any image is read.

- **A labels file**: ``labels.csv`` or ``labels.jsonl`` at the zip's root (or at the root of
  the one folder everything is in), with the image's path in the zip (relative to the labels
  file; column ``image_column``, default ``image``) and its label (``label_column``, default
  ``label``; ``labels`` for ``image-multilabel``: a list in JSONL, ``a|b`` in CSV). It is read
  with the table readers and their caps (:mod:`app.datasets.readers`). A row without an image
  path or a label is dropped and counted; a path the zip does not hold as an image is fatal
  (the first ones listed), as is an image named by two rows; images no row names are ignored.
- **Class folders** (no labels file; ``image-classification`` only): ``cat/001.png``; the label
  is the first folder, after leaving out one folder holding everything
  (``data/cat/001.png``). An image outside a class folder is fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, Field

from app.contract.tasks import IMAGE_MULTILABEL
from app.datasets.failures import IngestFailure, json_type
from app.datasets.images.archive import (
    IMAGE_EXTENSIONS,
    LABEL_FILES,
    READ_ERRORS,
    Archive,
    Member,
)
from app.datasets.images.report import SHOWN, ImageStats, Label
from app.datasets.limits import IngestLimits
from app.datasets.readers import CsvReader, JsonlReader
from app.datasets.values import canonical_value
from app.errors import InvalidInput

_FORMATS = ", ".join(sorted({fmt for fmt in IMAGE_EXTENSIONS.values()}))


class ImageColumns(BaseModel):
    """The labels file's columns (form fields ``image_column`` and ``label_column``)."""

    image: str = Field("image", description="The image's path in the zip.")
    label: str = Field("label", description="The label (image-multilabel: the labels).")


@dataclass(frozen=True)
class Item:
    member: Member
    label: Label


def plan(
    archive: Archive,
    *,
    task: str,
    columns: ImageColumns,
    limits: IngestLimits,
    stats: ImageStats,
) -> list[Item]:
    """The rows to store, in order; raises :class:`IngestFailure` for a layout that is wrong."""
    stats.ignore(archive.ignored)
    if not archive.images:
        shown = ", ".join(repr(n) for n in archive.ignored[:5])
        raise IngestFailure(
            f"the zip holds no images ({_FORMATS} files)" + (f"; it holds {shown}" if shown else "")
        )
    found = _labels_file(archive, stats)
    if found is None:
        if task == IMAGE_MULTILABEL:
            raise IngestFailure(
                "image-multilabel needs a labels file: class folders give one label an image; "
                "add labels.csv (columns image, labels with 'a|b') or labels.jsonl "
                '({"image": "x.png", "labels": ["a", "b"]}) at the zip\'s root'
            )
        stats.layout = "folders"
        return _folders(archive, limits, stats)
    member, base = found
    return _from_labels_file(archive, member, base, task, columns, limits, stats)


def _labels_file(archive: Archive, stats: ImageStats) -> tuple[Member, str] | None:
    """The labels file and the folder it is in (``""`` or ``"top/"``); others are ignored."""
    names = list(archive.images) + list(archive.label_files)
    tops = {name.split("/")[0] for name in names}
    base = ""
    if len(tops) == 1 and all("/" in name for name in names):
        base = f"{tops.pop()}/"
    found = [m for n, m in archive.label_files.items() if n in {base + f for f in LABEL_FILES}]
    if len(found) > 1:
        raise IngestFailure("the zip holds both labels.csv and labels.jsonl; keep one of them")
    others = [n for n in archive.label_files if not found or n != found[0].name]
    stats.ignore(others)
    return (found[0], base) if found else None


def _folders(archive: Archive, limits: IngestLimits, stats: ImageStats) -> list[Item]:
    paths = {name: name.split("/") for name in archive.images}
    tops = {parts[0] for parts in paths.values()}
    strip = 1 if len(tops) == 1 and all(len(p) >= 3 for p in paths.values()) else 0
    items: list[Item] = []
    distinct: set[str] = set()
    for name in sorted(paths):
        parts = paths[name][strip:]
        if len(parts) < 2:
            raise IngestFailure(
                f"image {name!r} is not in a class folder: put each image in a folder named "
                "after its class (cat/001.png), or add a labels.csv or labels.jsonl"
            )
        stats.rows_read += 1
        limits.rows(stats.rows_read, exact=False)
        label = canonical_value("label", parts[0], f"folder of {name!r}", "folder", limits)
        if label is None:
            raise IngestFailure(f"image {name!r} is in a folder with a blank name")
        distinct.add(str(label))
        limits.labels(len(distinct), where=f"image {name!r}")
        items.append(Item(archive.images[name], label))
    return items


def _from_labels_file(
    archive: Archive,
    member: Member,
    base: str,
    task: str,
    columns: ImageColumns,
    limits: IngestLimits,
    stats: ImageStats,
) -> list[Item]:
    fmt = "csv" if member.name.endswith(".csv") else "jsonl"
    label_file = member.name
    stats.layout = "labels.csv" if fmt == "csv" else "labels.jsonl"
    if columns.image == columns.label:
        raise InvalidInput(f"the column mapping uses one column twice: {columns.image!r}")
    kind = "labels" if task == IMAGE_MULTILABEL else "label"
    limits.dataset_bytes(member.info.file_size, what=f"{label_file} holds {{n}} bytes")
    stats.mapped = [columns.image, columns.label]
    wanted = {columns.image: "text", columns.label: kind}
    items: list[Item] = []
    used: dict[str, str] = {}
    distinct: set[str] = set()
    missing: list[str] = []
    absent = 0
    for where, values in _label_rows(archive, member, fmt, wanted, limits, stats):
        stats.rows_read += 1
        limits.rows(stats.rows_read, exact=False)
        path = _image_path(values.get(columns.image), where, columns.image)
        label = canonical_value(kind, values.get(columns.label), where, columns.label, limits)
        blank = [c for c, v in ((columns.image, path), (columns.label, label)) if v is None]
        if blank or path is None or label is None:
            stats.drop(blank)
            continue
        image = archive.images.get(base + path)
        if image is None:
            absent += 1
            if len(missing) < SHOWN:
                missing.append(f"{path!r} ({where})")
            continue
        if image.name in used:
            raise IngestFailure(
                f"{where}: image {path!r} is listed twice in {label_file} (first at "
                f"{used[image.name]}); give each image one row"
            )
        used[image.name] = where
        for one in (label,) if isinstance(label, str) else label:
            distinct.add(one)
            limits.labels(len(distinct), where=where)
        items.append(Item(image, label))
    if not stats.rows_read:
        raise IngestFailure(f"{label_file} has no rows")
    _check_columns(label_file, wanted, stats.columns)
    if absent:
        raise IngestFailure(
            f"{label_file} names {absent} images the zip does not hold as {_FORMATS} files "
            f"(paths are relative to {label_file}'s folder): {', '.join(missing)}"
        )
    unlisted = [name for name in archive.images if name not in used]
    stats.ignore(unlisted, unlisted=len(unlisted))
    return items


def _label_rows(
    archive: Archive,
    member: Member,
    fmt: str,
    wanted: dict[str, str],
    limits: IngestLimits,
    stats: ImageStats,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The labels file's rows, read from the zip with the table readers and their caps."""
    reader_cls = ZipCsvReader if fmt == "csv" else ZipJsonlReader
    try:
        with reader_cls(lambda: archive.text(member), wanted, limits=limits) as reader:
            if reader.header_known:
                _check_columns(member.name, wanted, reader.columns)
            for row in reader:
                stats.columns = reader.columns
                yield row
            stats.columns = reader.columns
    except READ_ERRORS as exc:
        raise IngestFailure(
            f"{member.name} cannot be read from the zip ({type(exc).__name__}: {exc})"
        ) from None


def _check_columns(label_file: str, wanted: dict[str, str], found: list[str]) -> None:
    lacking = [name for name in wanted if name not in found]
    if lacking:
        shown = ", ".join(repr(c) for c in found[:50]) or "none"
        raise IngestFailure(
            f"{label_file} has no column {', '.join(repr(c) for c in lacking)}; columns found: "
            f"{shown}; name them with image_column and label_column"
        )


def _image_path(value: Any, where: str, column: str) -> str | None:
    """A path in the zip, as a key: ``/`` separators, no ``./``; None when blank."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise IngestFailure(f"{where}: {column!r} must be a path string, got {json_type(value)}")
    parts = [p for p in value.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts) or None


class ZipCsvReader(CsvReader):
    """A :class:`CsvReader` of a member of the zip (never extracted)."""

    def __init__(
        self, opener: Callable[[], IO[str]], wanted: dict[str, str], *, limits: IngestLimits
    ) -> None:
        super().__init__(Path("labels.csv"), wanted, limits=limits)
        self._opener = opener

    def _open_text(self) -> IO[str]:
        return self._opener()


class ZipJsonlReader(JsonlReader):
    """A :class:`JsonlReader` of a member of the zip (never extracted)."""

    def __init__(
        self, opener: Callable[[], IO[str]], wanted: dict[str, str], *, limits: IngestLimits
    ) -> None:
        super().__init__(Path("labels.jsonl"), wanted, limits=limits)
        self._opener = opener

    def _open_text(self) -> IO[str]:
        return self._opener()
