"""The first rows of a stored dataset, with every cell cut short, read in bounded memory.

Rows are read in batches sized from the report's longest text (a dataset stored before the
caps may hold cells of megabytes), strings are cut in Arrow (``utf8_slice_codeunits``) before
they become Python objects, and each cut cell is listed in ``truncated_cells``. An image (the
binary column of an image dataset) is shown as its size: ``{"media_type", "bytes"}``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.datasets.orm import Dataset
from app.datasets.schemas import DatasetPreview, TruncatedCell
from app.storage import Storage

#: decoded bytes one preview batch aims at
BATCH_BYTES = 16 * 1024 * 1024
#: bytes a row is assumed to take when the report does not say
UNKNOWN_ROW_BYTES = 4 * 1024 * 1024


def preview(dataset: Dataset, *, storage: Storage, limit: int, cell_chars: int) -> DatasetPreview:
    parquet = pq.ParquetFile(storage.path(dataset.storage_path), buffer_size=1 << 20)
    columns = list(parquet.schema_arrow.names)
    rows: list[dict[str, Any]] = []
    cut: list[TruncatedCell] = []
    per_batch = max(1, min(limit, BATCH_BYTES // _row_bytes(dataset.report or {})))
    for batch in parquet.iter_batches(batch_size=per_batch):
        batch = batch.slice(0, limit - len(rows))
        values: dict[str, list[Any]] = {}
        for name in columns:
            values[name] = _cut_column(batch.column(name), name, len(rows), cell_chars, cut)
        rows += [{name: values[name][i] for name in columns} for i in range(batch.num_rows)]
        if len(rows) >= limit:
            break
    return DatasetPreview(
        id=dataset.id,
        columns=columns,
        rows=rows,
        total_rows=dataset.num_rows,
        truncated_cells=cut,
    )


def _row_bytes(report: dict[str, Any]) -> int:
    """At most how many bytes one row decodes to, from the report's longest texts (images:
    an uncompressed RGB copy of the stored size)."""
    images = report.get("images")
    if isinstance(images, dict) and isinstance(images.get("stored_max_side"), int):
        return 3 * images["stored_max_side"] ** 2 + 64 * 1024
    chars = 0
    for key in ("text_length", "text_pair_length"):
        stats = report.get(key)
        if isinstance(stats, dict) and isinstance(stats.get("max"), int):
            chars += stats["max"]
        elif key == "text_length":
            return UNKNOWN_ROW_BYTES
    return 4 * chars + 64 * 1024  # UTF-8 is at most 4 bytes a character; labels are short


def _cut_column(
    column: pa.Array, name: str, first: int, cell_chars: int, cut: list[TruncatedCell]
) -> list[Any]:
    t = pa.types
    if t.is_binary(column.type) or t.is_large_binary(column.type):
        # an image: its size, not its bytes
        sizes = pc.binary_length(column).to_pylist()
        return [{"media_type": "image/png", "bytes": n} for n in sizes]
    if t.is_string(column.type) or t.is_large_string(column.type):
        lengths = pc.utf8_length(column).to_pylist()
        shown = pc.utf8_slice_codeunits(column, 0, cell_chars).to_pylist()
        for i, length in enumerate(lengths):
            if length is not None and length > cell_chars:
                cut.append(TruncatedCell(row=first + i, column=name, length=length))
        return shown
    values = column.to_pylist()
    if t.is_list(column.type) or t.is_large_list(column.type):
        for i, items in enumerate(values):
            if items is None:
                continue
            kept, used = [], 0
            for item in items:
                used += len(str(item))
                if used > cell_chars:
                    break
                kept.append(item)
            if len(kept) < len(items):
                cut.append(TruncatedCell(row=first + i, column=name, length=len(items)))
                values[i] = kept
    return values
