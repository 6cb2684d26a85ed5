"""Reading an uploaded Parquet file in bounded memory, whatever it expands to.

A Parquet file can be tiny and decode to gigabytes: a dictionary-encoded column stores a value
once and refers to it from every row, and zstd shrinks a repetitive page to almost nothing.
So nothing is decoded before the footer says it may be, and then only in batches sized to it:

1. From the footer alone: the number of columns and rows, the column types, and the
   uncompressed size of the mapped columns (``TUNESERVE_MAX_DATASET_BYTES``); a data page is
   never larger than that, and pyarrow decodes a page at a time.
2. For each row group whose mapped columns have a dictionary page, the dictionary is read
   alone (one row, read as Arrow dictionaries: the dictionary page and nothing more): a value
   past ``TUNESERVE_MAX_CELL_BYTES`` fails there, and the largest value sizes the batches.
3. Batches of at most about :data:`BATCH_BYTES` decoded bytes (row count from step 2 and the
   row group's uncompressed bytes per row); each batch's cells are measured in Arrow
   (``binary_length``) and added to the decoded total before anything becomes Python objects.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.datasets.failures import IngestFailure, LimitExceeded
from app.datasets.readers import Row, TableReader

#: decoded bytes one batch aims at (it becomes Python strings next)
BATCH_BYTES = 8 * 1024 * 1024
MAX_BATCH_ROWS = 8192
#: pyarrow reads the file through a buffer of this size, not a column chunk at a time
READ_BUFFER = 1 << 20
#: bytes a plain value costs beyond its own (its length), and a column chunk beyond its values
#: (page headers, levels), generously
VALUE_OVERHEAD = 16
CHUNK_OVERHEAD = 1 << 20
_ERRORS = (pa.ArrowException, OSError, ValueError)


class ParquetReader(TableReader):
    """Parquet through pyarrow, batch by batch, reading only the wanted columns."""

    def __enter__(self) -> ParquetReader:
        try:
            self._pf = pq.ParquetFile(self.path, buffer_size=READ_BUFFER)
            schema = self._pf.schema_arrow
            meta = self._pf.metadata
        except _ERRORS as exc:
            raise IngestFailure(f"the Parquet file is corrupt or unreadable: {exc}") from None
        self.limits.columns(len(schema.names))
        self.columns = list(schema.names)
        self._check_unique(self.columns)
        self.limits.rows(meta.num_rows, exact=True)
        for name, kind in self.wanted.items():
            if name in self.columns:
                _check_arrow_type(name, kind, schema.field(name).type)
        self._names = [name for name in self.wanted if name in self.columns]
        try:
            self._plan = self._plan_batches(meta)
        except _ERRORS as exc:
            raise IngestFailure(f"the Parquet file is corrupt or unreadable: {exc}") from None
        self._decoded = 0
        return self

    def _plan_batches(self, meta: pq.FileMetaData) -> list[tuple[int, int]]:
        """``(row group, rows per batch)`` for each row group with rows."""
        wanted = set(self._names)
        self._owner = _leaf_owners(self._pf.schema_arrow)  # top-level name of each leaf column
        if len(self._owner) != meta.num_columns:
            raise IngestFailure("the Parquet file's schema does not match its columns")
        leaves = [c for c in range(meta.num_columns) if self._owner[c] in wanted]
        chunks = [
            [(c, meta.row_group(g).column(c)) for c in leaves] for g in range(meta.num_row_groups)
        ]
        total = sum(chunk.total_uncompressed_size for group in chunks for _, chunk in group)
        what = "the file's mapped columns hold {n} bytes uncompressed"
        self.limits.dataset_bytes(total, what=what)
        for g, group in enumerate(chunks):
            for c, chunk in group:
                self._check_chunk(g, self._owner[c], chunk)
        dictionary_paths = sorted(
            {
                chunk.path_in_schema
                for group in chunks
                for _, chunk in group
                if chunk.has_dictionary_page and chunk.physical_type == "BYTE_ARRAY"
            }
        )
        peek = (
            pq.ParquetFile(self.path, buffer_size=READ_BUFFER, read_dictionary=dictionary_paths)
            if dictionary_paths
            else None
        )
        plan = []
        for g, group in enumerate(chunks):
            rows = meta.row_group(g).num_rows
            if rows <= 0:
                continue
            widest = self._dictionary_widths(peek, g, group) if peek is not None else {}
            per_row = sum(
                max(widest.get(name, 0), self._uncompressed(group, name) // rows) for name in wanted
            )
            plan.append((g, max(1, min(MAX_BATCH_ROWS, BATCH_BYTES // max(per_row, 1)))))
        return plan

    def _check_chunk(self, group: int, name: str, chunk: pq.ColumnChunkMetaData) -> None:
        """A column chunk larger than its values at the cell cap (plus the per-value and
        per-page overhead) holds a value over the cap, in its data or dictionary page."""
        cap = chunk.num_values * (self.limits.max_cell_bytes + VALUE_OVERHEAD) + CHUNK_OVERHEAD
        if chunk.physical_type == "BYTE_ARRAY" and chunk.total_uncompressed_size > cap:
            raise LimitExceeded(
                f"row group {group + 1}: column {name!r} holds {chunk.total_uncompressed_size} "
                f"bytes uncompressed for {chunk.num_values} values, so a value is over "
                f"{self.limits.max_cell_bytes} bytes (TUNESERVE_MAX_CELL_BYTES)",
                code="cell_too_large",
                status=413,
                details={
                    "setting": "TUNESERVE_MAX_CELL_BYTES",
                    "limit": self.limits.max_cell_bytes,
                    "where": f"row group {group + 1}",
                    "column": name[:200],
                },
            )

    def _dictionary_widths(
        self, peek: pq.ParquetFile, group: int, chunks: list[tuple[int, pq.ColumnChunkMetaData]]
    ) -> dict[str, int]:
        """The largest dictionary value of each mapped column of a row group, in bytes."""
        names = sorted({self._owner[c] for c, chunk in chunks if chunk.has_dictionary_page})
        if not names:
            return {}
        batch = next(peek.iter_batches(batch_size=1, row_groups=[group], columns=names), None)
        widths: dict[str, int] = {}
        if batch is None:
            return widths
        for name in names:
            values = _leaf(batch.column(name))
            if isinstance(values, pa.DictionaryArray) and _is_string(values.dictionary.type):
                widths[name] = int(pc.max(pc.binary_length(values.dictionary)).as_py() or 0)
                self.limits.cell(widths[name], where=f"row group {group + 1}", column=name)
        return widths

    def _uncompressed(self, chunks: list[tuple[int, pq.ColumnChunkMetaData]], name: str) -> int:
        return sum(chunk.total_uncompressed_size for c, chunk in chunks if self._owner[c] == name)

    def __iter__(self) -> Iterator[Row]:
        number = 0
        try:
            for group, size in self._plan:
                batches = self._pf.iter_batches(
                    batch_size=size, row_groups=[group], columns=self._names
                )
                for batch in batches:
                    self._measure(batch, number)
                    data = {name: batch.column(name).to_pylist() for name in self._names}
                    for i in range(batch.num_rows):
                        number += 1
                        yield f"row {number}", {name: data[name][i] for name in self._names}
        except _ERRORS as exc:
            raise IngestFailure(
                f"the Parquet file is corrupt or unreadable near row {number + 1}: {exc}"
            ) from None

    def _measure(self, batch: pa.RecordBatch, before: int) -> None:
        """Check each string cell of the batch and add them to the decoded total, in Arrow."""
        for name in self._names:
            column = batch.column(name)
            values = _leaf(column)
            in_list = values is not column
            if isinstance(values, pa.DictionaryArray):
                if not _is_string(values.dictionary.type):
                    continue
                lengths = pc.take(pc.binary_length(values.dictionary), values.indices)
            elif _is_string(values.type):
                if pa.types.is_string_view(values.type):
                    values = values.cast(pa.large_string())
                lengths = pc.binary_length(values)
            else:
                continue
            widest = pc.max(lengths).as_py()
            if widest is not None and widest > self.limits.max_cell_bytes:
                at = pc.index(pc.greater(lengths, self.limits.max_cell_bytes), True).as_py()
                row = pc.list_parent_indices(column)[at].as_py() if in_list else at
                self.limits.cell(
                    int(lengths[at].as_py()), where=f"row {before + row + 1}", column=name
                )
            self._decoded += int(pc.sum(lengths).as_py() or 0)
        what = "the file's mapped columns decode to more than {n} bytes"
        self.limits.dataset_bytes(self._decoded, what=what)


def _leaf(column: pa.Array) -> pa.Array:
    """The values of a list column (the labels of a label list), else the column itself."""
    t = pa.types
    if t.is_list(column.type) or t.is_large_list(column.type) or t.is_fixed_size_list(column.type):
        return pc.list_flatten(column)
    return column


def _is_string(dtype: pa.DataType) -> bool:
    t = pa.types
    return t.is_string(dtype) or t.is_large_string(dtype) or t.is_string_view(dtype)


def _leaf_owners(schema: pa.Schema) -> list[str]:
    """For each leaf column of the file, in order, the top-level field it belongs to."""
    owners: list[str] = []
    for field in schema:
        owners += [field.name] * _leaf_count(field.type)
    return owners


def _leaf_count(dtype: pa.DataType) -> int:
    t = pa.types
    if t.is_struct(dtype):
        return sum(_leaf_count(dtype.field(i).type) for i in range(dtype.num_fields))
    if t.is_map(dtype):
        return _leaf_count(dtype.key_type) + _leaf_count(dtype.item_type)
    if t.is_list(dtype) or t.is_large_list(dtype) or t.is_fixed_size_list(dtype):
        return _leaf_count(dtype.value_type)
    return 1


def _check_arrow_type(name: str, kind: str, dtype: pa.DataType) -> None:
    t = pa.types
    base = dtype.value_type if t.is_dictionary(dtype) else dtype
    is_view = getattr(t, "is_string_view", lambda _: False)
    is_str = t.is_string(base) or t.is_large_string(base) or is_view(base)
    scalar = is_str or t.is_integer(base) or t.is_boolean(base) or t.is_floating(base)
    if kind == "text":
        ok, need = is_str or t.is_null(base), "a string column"
    elif kind == "label":
        ok, need = scalar or t.is_null(base), "a string, integer or boolean column"
    else:
        listy = t.is_list(base) or t.is_large_list(base) or t.is_fixed_size_list(base)
        inner = base.value_type if listy else None
        inner_ok = inner is not None and (
            t.is_string(inner) or t.is_large_string(inner) or t.is_integer(inner)
        )
        ok, need = is_str or t.is_null(base) or inner_ok, "a list<string> or string column"
    if not ok:
        raise IngestFailure(f"column {name!r} has type {dtype}; it must be {need}")
