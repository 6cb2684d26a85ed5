"""Streaming readers of uploaded tables: the shared interface, CSV and JSON Lines.

A reader is a context manager with ``columns`` (the columns found in the file) and iterates
``(where, values)`` pairs: ``where`` names the row for messages ("line 7", "row 12") and
``values`` maps each wanted source column present in that row to its raw value (CSV: ``str``;
JSONL and Parquet: the decoded Python value, ``None`` for null). Nothing is read whole: CSV and
JSONL go line by line through a strict UTF-8 text stream, each line read with a length bound,
Parquet (:mod:`app.datasets.parquet_reader`) batch by batch. Readers enforce the caps of
:class:`~app.datasets.limits.IngestLimits` on what they decode: columns, line length and the
bytes of each cell.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from app.datasets.failures import IngestFailure, json_type
from app.datasets.limits import IngestLimits

Row = tuple[str, dict[str, Any]]


class TableReader:
    #: True when ``columns`` is complete on entering (a header or schema), not found row by row
    header_known = True

    def __init__(self, path: Path, wanted: dict[str, str], *, limits: IngestLimits) -> None:
        self.path = path
        self.wanted = wanted
        self.limits = limits
        self.columns: list[str] = []
        self._file: IO[Any] | None = None

    def __enter__(self) -> TableReader:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()

    def __iter__(self) -> Iterator[Row]:
        raise NotImplementedError

    def _check_unique(self, names: list[str]) -> None:
        for name in self.wanted:
            if names.count(name) > 1:
                raise IngestFailure(f"column {name!r} appears more than once in the file")

    def _open_text(self) -> IO[str]:
        """The file as strict UTF-8 text (a BOM is skipped); a reader of another source (a
        member of a zip) overrides this."""
        return self.path.open(encoding="utf-8-sig", errors="strict", newline="")

    def _lines(self) -> Iterator[str]:
        """The file's lines, none longer than the row cap (it is never read whole)."""
        self._file = self._open_text()
        limit = self.limits.max_row_chars
        number = 0
        while line := self._file.readline(limit + 1):
            number += 1
            if len(line) > limit:
                self.limits.row_chars(len(line), where=f"line {number}")
            yield line


class CsvReader(TableReader):
    """Comma-separated, UTF-8 (a BOM is fine), first non-blank line is the header, quoted
    fields may hold newlines. Header names are stripped of surrounding spaces."""

    def __enter__(self) -> CsvReader:
        # The limit is process-wide: raise it (never lower it) and check our own limit per row.
        cap = self.limits.max_cell_bytes
        csv.field_size_limit(max(csv.field_size_limit(), cap + 1))
        self._reader = csv.reader(self._lines(), strict=True)
        header = next((row for row in self._rows() if row), None)
        if header is None:
            raise IngestFailure("the file has no header row (it holds only blank lines)")
        self.limits.columns(len(header))
        self.columns = [name.strip() for name in header]
        self._check_unique(self.columns)
        self._index = {
            name: self.columns.index(name) for name in self.wanted if name in self.columns
        }
        return self

    def _rows(self) -> Iterator[list[str]]:
        cap = self.limits.max_cell_bytes
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                where = f"line {self._reader.line_num}"
                if "field limit" in str(exc):
                    self.limits.cell(None, where=where, column=None)
                raise IngestFailure(f"{where}: malformed CSV ({exc})") from None
            if row and max(map(len, row)) * 4 > cap:
                for i, field in enumerate(row):
                    name = self.columns[i] if i < len(self.columns) else f"column {i + 1}"
                    where = f"line {self._reader.line_num}"
                    self.limits.text_cell(field, where=where, column=name)
            yield row

    def __iter__(self) -> Iterator[Row]:
        width = len(self.columns)
        for row in self._rows():
            if not row:
                continue
            line = self._reader.line_num
            if len(row) > width:
                raise IngestFailure(
                    f"line {line}: {len(row)} fields but the header has {width} columns "
                    "(quote fields that contain commas)"
                )
            values = {name: row[i] if i < len(row) else None for name, i in self._index.items()}
            yield f"line {line}", values


class JsonlReader(TableReader):
    """One JSON object a line, UTF-8 (a BOM is fine); blank lines are skipped. The columns are
    the keys seen, in order of first appearance."""

    header_known = False

    def __iter__(self) -> Iterator[Row]:
        seen: dict[str, None] = {}
        for number, line in enumerate(self._lines(), start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                hint = "" if line.lstrip().startswith("{") else " (is this really JSON Lines?)"
                raise IngestFailure(
                    f"{where}: invalid JSON ({exc.msg} at column {exc.colno}){hint}"
                ) from None
            except RecursionError:
                raise IngestFailure(f"{where}: JSON nested too deeply") from None
            if not isinstance(obj, dict):
                raise IngestFailure(
                    f"{where}: expected a JSON object such as "
                    f'{{"text": "...", "label": "..."}}, got {json_type(obj)}'
                )
            if len(obj) > len(seen) or any(key not in seen for key in obj):
                seen.update(dict.fromkeys(obj))
                self.limits.columns(len(seen))
                self.columns = list(seen)
            values = {name: obj[name] for name in self.wanted if name in obj}
            for name, value in values.items():
                self._check_cells(value, where, name)
            if "\\u" in line:
                _check_encodable(values, where)
            yield where, values

    def _check_cells(self, value: Any, where: str, column: str) -> None:
        if isinstance(value, str):
            self.limits.text_cell(value, where=where, column=column)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    self.limits.text_cell(item, where=where, column=column)


def _check_encodable(value: Any, where: str) -> None:
    """JSON escapes can spell lone surrogates, which no UTF-8 file can store."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise IngestFailure(
                f"{where}: a string holds an invalid Unicode escape (a lone surrogate)"
            ) from None
    elif isinstance(value, dict):
        for item in value.values():
            _check_encodable(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_encodable(item, where)
