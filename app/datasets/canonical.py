"""The canonical Parquet table the trainer reads, and its writer.

Canonical schema (nothing else): ``text: string`` always; ``label: string`` for
``text-classification`` and ``text-pair-classification``; ``labels: list<string>`` for
``text-multilabel``; ``text_pair: string`` for pairs; no nulls (:mod:`app.datasets.values`
says how a cell becomes such a value).

Image tasks have their own columns (:data:`IMAGE_COLUMNS`, :mod:`app.datasets.images`).

It is written in bounded row groups, atomically (``app.atomic``: a temporary file, fsynced,
renamed into place), so a reader never sees half a dataset and a refused upload leaves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.atomic import AtomicFile
from app.contract.tasks import (
    IMAGE_CLASSIFICATION,
    IMAGE_MULTILABEL,
    MULTILABEL_TASK,
    PAIR_TASK,
    TEXT_CLASSIFICATION,
    UNLABELED_TEXT,
)
from app.datasets.failures import IngestFailure

#: per text task, the canonical columns in order: (canonical name, kind). A kind says how a
#: value is read and stored.
TASK_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    TEXT_CLASSIFICATION: (("text", "text"), ("label", "label")),
    MULTILABEL_TASK: (("text", "text"), ("labels", "labels")),
    PAIR_TASK: (("text", "text"), ("text_pair", "text"), ("label", "label")),
    UNLABELED_TEXT: (("text", "text"),),
}
#: per image task: the PNG bytes of the stored copy, the label(s), the original width, height
#: and Pillow mode, and the member's path in the zip
IMAGE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    IMAGE_CLASSIFICATION: (("image", "image"), ("label", "label")),
    IMAGE_MULTILABEL: (("image", "image"), ("labels", "labels")),
}
IMAGE_META_COLUMNS = (("width", "int32"), ("height", "int32"), ("mode", "text"), ("source", "text"))
_ARROW_TYPES = {
    "text": pa.string(),
    "label": pa.string(),
    "labels": pa.list_(pa.string()),
    "image": pa.binary(),
    "int32": pa.int32(),
}

#: a row group is written every this many rows or characters of text, whichever comes first
_FLUSH_ROWS = 16_384
_FLUSH_CHARS = 8 * 1024 * 1024


def canonical_schema(columns: Iterable[tuple[str, str]]) -> pa.Schema:
    """The Arrow schema of ``(canonical name, kind)`` columns, in order."""
    return pa.schema([pa.field(name, _ARROW_TYPES[kind], nullable=False) for name, kind in columns])


class AtomicParquetWriter:
    """Writes row batches to ``dest.parent/.tmp-<random>.parquet``; ``commit`` fsyncs it and
    renames it onto ``dest``, ``abort`` removes it. A row group is written every
    ``flush_rows`` rows or ``flush_size`` units of the large values (characters of ``text``
    and ``text_pair``, bytes of ``image``), whichever comes first."""

    def __init__(
        self,
        dest: Path,
        schema: pa.Schema,
        *,
        flush_rows: int = _FLUSH_ROWS,
        flush_size: int = _FLUSH_CHARS,
    ) -> None:
        self.schema = schema
        self._flush_rows = flush_rows
        self._flush_size = flush_size
        self._sized = [n for n in ("text", "text_pair", "image") if n in schema.names]
        self._atomic = AtomicFile(dest, suffix=".parquet")
        self.tmp = self._atomic.tmp
        self._file = self._atomic.handle
        self._writer: pq.ParquetWriter | None = None
        self._buffer: dict[str, list[Any]] = {name: [] for name in schema.names}
        self._rows = 0
        self._chars = 0

    def add(self, row: dict[str, Any]) -> None:
        for name, column in self._buffer.items():
            value = row[name]
            column.append(list(value) if isinstance(value, tuple) else value)
        self._rows += 1
        self._chars += sum(len(row[name]) for name in self._sized)
        if self._rows >= self._flush_rows or self._chars >= self._flush_size:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            # binary columns (PNG images) are compressed already and never repeat: no zstd, no
            # dictionary (which would hash every image before giving up)
            binary = {f.name for f in self.schema if pa.types.is_binary(f.type)}
            self._writer = pq.ParquetWriter(
                self._file,
                self.schema,
                compression={n: "none" if n in binary else "zstd" for n in self.schema.names},
                use_dictionary=[n for n in self.schema.names if n not in binary],
            )
        if self._rows:
            try:
                table = pa.Table.from_pydict(self._buffer, schema=self.schema)
            except (pa.ArrowException, UnicodeEncodeError) as exc:
                raise IngestFailure(f"a value cannot be stored as UTF-8 text: {exc}") from None
            self._writer.write_table(table)
        self._buffer = {name: [] for name in self.schema.names}
        self._rows = 0
        self._chars = 0

    def commit(self, dest: Path) -> None:
        self._flush()
        assert self._writer is not None
        self._writer.close()
        assert dest == self._atomic.dest
        self._atomic.commit()

    def abort(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:
            pass  # the file is being thrown away
        self._atomic.abort()
