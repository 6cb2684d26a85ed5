"""Turn an uploaded CSV, JSONL or Parquet file into the canonical Parquet table the trainer reads
(:mod:`app.datasets.canonical`): check the claimed format (:mod:`app.datasets.sniffing`), read
the mapped columns row by row (:mod:`app.datasets.readers`,
:mod:`app.datasets.parquet_reader`), convert each cell (:mod:`app.datasets.values`), gather the
report (:mod:`app.datasets.report`) and write the rows.

Rules worth knowing:

- A row whose required value is missing, null or blank (whitespace only) is dropped and
  counted, never fatal unless nothing is left.
- Duplicate texts are kept and reported, not removed.
- CSV is comma-separated only (no sniffing), UTF-8 with or without a BOM.
- Every fatal problem raises :class:`~app.errors.DatasetInvalid` (422, details = the report),
  an unknown format :class:`~app.errors.UnsupportedMediaType` (415), a bad task or column
  mapping :class:`~app.errors.InvalidInput` (422), a cap of :class:`IngestLimits` passed a
  413 or 422 with the cap's own code (:mod:`app.datasets.limits`). Nothing is written at
  ``dest`` then.
- The caps are enforced while reading: CSV and JSONL are text, so their decoded size is the
  file's and is checked before parsing; the readers bound each line and cell; Parquet is
  checked from its footer and then batch by batch (:mod:`app.datasets.parquet_reader`); the
  distinct labels are counted row by row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, Field

from app.contract.tasks import MULTILABEL_TASK, Task
from app.datasets.canonical import TASK_COLUMNS, AtomicParquetWriter, canonical_schema
from app.datasets.failures import IngestFailure, LimitExceeded
from app.datasets.limits import IngestLimits
from app.datasets.parquet_reader import ParquetReader
from app.datasets.readers import CsvReader, JsonlReader, TableReader
from app.datasets.report import StatsCollector, ValidationReport
from app.datasets.sniffing import (
    HEAD_BYTES,
    FormatName,
    check_head,
    check_parquet_tail,
    claimed_format,
    first_invalid_utf8,
    utf8_message,
)
from app.datasets.values import canonical_value
from app.errors import DatasetInvalid, InvalidInput


class ColumnMapping(BaseModel):
    """Which source column holds each canonical column."""

    text: str = Field("text", description="Column with the input text.")
    label: str = Field("label", description="Column with the label (multilabel: the labels).")
    text_pair: str = Field("text_pair", description="Second text of text-pair classification.")


def open_reader(
    fmt: FormatName, path: Path, wanted: dict[str, str], *, limits: IngestLimits
) -> TableReader:
    """A reader for ``path``; ``wanted`` maps each source column to read to its kind
    (``text``, ``label`` or ``labels``), which Parquet uses to check column types."""
    cls = {"csv": CsvReader, "jsonl": JsonlReader, "parquet": ParquetReader}[fmt]
    return cls(path, wanted, limits=limits)


def ingest_file(
    src: Path,
    *,
    filename: str,
    task: Task,
    columns: ColumnMapping,
    dest: Path,
    limits: IngestLimits,
    declared_format: str | None = None,
) -> ValidationReport:
    """Parse and validate ``src``; write the canonical Parquet atomically to ``dest``."""
    if task not in TASK_COLUMNS:
        raise InvalidInput(
            f"task {task!r} cannot be ingested from a table; "
            f"use one of: {', '.join(get_args(Task))}"
        )
    targets = [
        (name, kind, getattr(columns, "label" if name == "labels" else name))
        for name, kind in TASK_COLUMNS[task]
    ]
    sources = [source for _, _, source in targets]
    if len(set(sources)) < len(sources):
        raise InvalidInput(f"the column mapping uses one source column twice: {sources}")
    fmt = claimed_format(filename, declared_format)
    stats = StatsCollector(
        labelled=any(kind != "text" for _, kind, _ in targets),
        has_pair=any(name == "text_pair" for name, _, _ in targets),
    )
    found: list[str] = []
    writer: AtomicParquetWriter | None = None
    try:
        with src.open("rb") as f:
            check_head(fmt, f.read(HEAD_BYTES))
        if fmt == "parquet":
            check_parquet_tail(src)
        else:  # the decoded text is the file
            limits.dataset_bytes(src.stat().st_size, what="the file holds {n} bytes of text")
        writer = AtomicParquetWriter(dest, canonical_schema((n, k) for n, k, _ in targets))
        wanted = {source: kind for _, kind, source in targets}
        with open_reader(fmt, src, wanted, limits=limits) as reader:
            found = reader.columns
            if reader.header_known:
                _check_missing_columns(task, targets, reader.columns, fmt)
            for where, values in reader:
                found = reader.columns
                stats.rows_read += 1
                limits.rows(stats.rows_read, exact=False)
                row: dict[str, Any] = {}
                missing = []
                for name, kind, source in targets:
                    value = canonical_value(kind, values.get(source), where, source, limits)
                    if value is None:
                        missing.append(source)
                    else:
                        row[name] = value
                if missing:
                    stats.drop(missing)
                    continue
                known = len(stats.label_counts)
                stats.keep(row["text"], row.get("text_pair"), row.get("label", row.get("labels")))
                if len(stats.label_counts) > known:
                    limits.labels(len(stats.label_counts), where=where)
                writer.add(row)
            found = reader.columns
        _check_result(task, targets, found, fmt, stats)
        writer.commit(dest)
    except (IngestFailure, UnicodeDecodeError) as exc:
        if writer is not None:
            writer.abort()
        if isinstance(exc, LimitExceeded):
            raise exc.to_app_error() from None
        if isinstance(exc, UnicodeDecodeError):
            with src.open("rb") as f:
                bad = first_invalid_utf8(f)
            message = utf8_message(*bad) if bad else f"the file is not valid UTF-8: {exc}"
        else:
            message = str(exc)
        report = stats.report(
            fmt=fmt,
            columns=found[: limits.max_columns],
            mapped=sources,
            min_examples=limits.min_examples_per_class,
            errors=[message],
        )
        raise DatasetInvalid(message, details=report.model_dump()) from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return stats.report(
        fmt=fmt,
        columns=found,
        mapped=sources,
        min_examples=limits.min_examples_per_class,
        errors=[],
    )


def _check_missing_columns(
    task: str, targets: list[tuple[str, str, str]], found: list[str], fmt: str
) -> None:
    missing = [(name, source) for name, _, source in targets if source not in found]
    if not missing:
        return
    what = ", ".join(f"{source!r} (for {name})" for name, source in missing)
    fields = " and ".join(f"`{_form_field(name)}`" for name, _ in missing)
    shown = ", ".join(repr(c) for c in found[:50]) + (" ..." if len(found) > 50 else "")
    hint = ""
    if fmt == "csv" and len(found) == 1 and any(sep in found[0] for sep in ";\t"):
        hint = " (only comma-separated CSV is supported)"
    elif fmt == "csv" and found and found[0].lstrip().startswith("{"):
        hint = " (this looks like JSON Lines; name it .jsonl)"
    raise IngestFailure(
        f"required column {what} not found for task {task}; columns found: {shown or 'none'}"
        f"{hint}; name the column that holds them with the form field {fields}"
    )


def _form_field(target: str) -> str:
    """The upload form field that maps the column of ``target`` (``labels`` -> label_column)."""
    return f"{'label' if target == 'labels' else target}_column"


def _check_result(
    task: str,
    targets: list[tuple[str, str, str]],
    found: list[str],
    fmt: str,
    stats: StatsCollector,
) -> None:
    if stats.rows_read == 0:
        only_header = " (only a header)" if fmt == "csv" and found else ""
        raise IngestFailure(f"the file has no data rows{only_header}")
    _check_missing_columns(task, targets, found, fmt)
    if stats.rows == 0:
        per_column = ", ".join(f"{k}: {v}" for k, v in stats.empty_or_missing.items())
        raise IngestFailure(
            f"no usable rows: all {stats.rows_read} rows miss a required value ({per_column})"
        )
    labels = list(stats.label_counts)
    if task == MULTILABEL_TASK and len(labels) < 2:
        raise IngestFailure(
            f"text-multilabel needs at least 2 distinct labels; found {len(labels)}: {labels}"
        )
    if stats.labelled and task != MULTILABEL_TASK and len(labels) < 2:
        raise IngestFailure(
            f"only one class ({labels[0]!r}) found; a classification task needs at least 2"
        )
