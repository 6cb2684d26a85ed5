"""Reading uploaded tables: format detection and streaming readers for CSV, JSONL and Parquet.

A reader is a context manager with ``columns`` (the columns found in the file) and iterates
``(where, values)`` pairs: ``where`` names the row for messages ("line 7", "row 12") and
``values`` maps each wanted source column present in that row to its raw value (CSV: ``str``;
JSONL and Parquet: the decoded Python value, ``None`` for null). Nothing is read whole: CSV and
JSONL go line by line through a strict UTF-8 text stream, Parquet batch by batch.

A problem the uploader must fix raises :class:`IngestFailure` with a message that says where.
``UnicodeDecodeError`` escapes the text readers; :func:`first_invalid_utf8` then finds the offset.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path, PurePath
from types import TracebackType
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from app.errors import UnsupportedMediaType

FormatName = Literal["csv", "jsonl", "parquet"]
Row = tuple[str, dict[str, Any]]
HEAD_BYTES = 64 * 1024
PARQUET_MAGIC = b"PAR1"

_EXTENSIONS: dict[str, FormatName] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json-lines": "jsonl",
    ".jsonlines": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_DECLARED: dict[str, FormatName] = {
    **{ext.lstrip("."): fmt for ext, fmt in _EXTENSIONS.items()},
    "text/csv": "csv",
    "application/csv": "csv",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}
_HINTS = {
    ".tsv": "tab-separated files are not supported; save it as comma-separated .csv",
    ".json": "a single JSON document is not supported; use JSON Lines (.jsonl), one object a line",
    ".xlsx": "export the sheet as .csv",
    ".xls": "export the sheet as .csv",
    ".gz": "compressed uploads are not supported; upload the uncompressed file",
    ".zip": "compressed uploads are not supported; upload the uncompressed file",
}
_MAGIC = (
    (PARQUET_MAGIC, "a Parquet file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", "a zip archive (or an .xlsx workbook)"),
    (b"\xd0\xcf\x11\xe0", "an Office document"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)
_CONTROL = frozenset(range(32)) - {9, 10, 12, 13} | {127}


class IngestFailure(Exception):
    """A fatal, user-fixable problem with the uploaded file; the message says what and where."""


def claimed_format(filename: str, declared: str | None) -> FormatName:
    """The format the upload claims: the declared one if given, else the file's extension."""
    if declared is not None and declared.strip():
        key = declared.split(";")[0].strip().lower()
        if key in _DECLARED:
            return _DECLARED[key]
        raise UnsupportedMediaType(
            f"unsupported dataset format {declared!r}; use one of: csv, jsonl, parquet"
        )
    suffix = PurePath(filename).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    hint = f" ({_HINTS[suffix]})" if suffix in _HINTS else ""
    raise UnsupportedMediaType(
        f"cannot tell the format of {filename!r} from its extension {suffix or '(none)'!r}{hint}; "
        "supported: .csv, .jsonl/.ndjson, .parquet/.pq, or declare the format"
    )


def check_head(fmt: FormatName, head: bytes) -> None:
    """Check that the first bytes of the file agree with its claimed format."""
    if not head:
        raise IngestFailure("the file is empty")
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if fmt == "parquet":
        if kind != "a Parquet file":
            looks = kind or ("text" if _looks_like_text(head) else "binary data")
            raise IngestFailure(
                "the file is not Parquet: it does not start with the Parquet magic bytes "
                f"'PAR1' (it looks like {looks})"
            )
        return
    if kind is not None:
        raise IngestFailure(f"the file was sent as {fmt.upper()} but looks like {kind}")
    controls = sum(1 for byte in head if byte in _CONTROL)
    if b"\x00" in head or controls > len(head) // 20:
        raise IngestFailure(
            f"the file was sent as {fmt.upper()} but looks binary (it contains NUL or other "
            "control bytes), not UTF-8 text"
        )
    bad = first_invalid_utf8(io.BytesIO(head), final=False)
    if bad is not None:
        raise IngestFailure(utf8_message(*bad))


def check_parquet_tail(path: Path) -> None:
    """A Parquet file ends with the footer magic too; without it the file is truncated."""
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if size < 12 or tail != PARQUET_MAGIC:
        raise IngestFailure(
            "the Parquet file is truncated or corrupt: it does not end with the magic bytes 'PAR1'"
        )


def first_invalid_utf8(stream: IO[bytes], *, final: bool = True) -> tuple[int, int, int] | None:
    """``(byte offset, byte value, line number)`` of the first invalid UTF-8 byte, or ``None``."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed = 0
    lines = 1
    while chunk := stream.read(1 << 20):
        buffered = len(decoder.getstate()[0])
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            data = bytes(exc.object)
            offset = fed - buffered + exc.start
            return offset, data[exc.start], lines + data[: exc.start].count(b"\n")
        fed += len(chunk)
        lines += chunk.count(b"\n")
    if final:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            data = bytes(exc.object)
            return fed - len(data) + exc.start, data[exc.start], lines
    return None


def utf8_message(offset: int, byte: int, line: int) -> str:
    return (
        f"the file is not valid UTF-8: byte 0x{byte:02x} at byte offset {offset} (line {line}) "
        "cannot be decoded; save the file as UTF-8"
    )


def open_reader(
    fmt: FormatName,
    path: Path,
    wanted: dict[str, str],
    *,
    max_columns: int,
    max_field_chars: int,
) -> TableReader:
    """A reader for ``path``; ``wanted`` maps each source column to read to its kind
    (``text``, ``label`` or ``labels``), which Parquet uses to check column types."""
    cls = {"csv": CsvReader, "jsonl": JsonlReader, "parquet": ParquetReader}[fmt]
    return cls(path, wanted, max_columns=max_columns, max_field_chars=max_field_chars)


class TableReader:
    #: True when ``columns`` is complete on entering (a header or schema), not found row by row
    header_known = True
    #: the number of data rows when the file says so up front (Parquet metadata)
    total_rows: int | None = None

    def __init__(
        self, path: Path, wanted: dict[str, str], *, max_columns: int, max_field_chars: int
    ) -> None:
        self.path = path
        self.wanted = wanted
        self.max_columns = max_columns
        self.max_field_chars = max_field_chars
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

    def _check_width(self, count: int) -> None:
        if count > self.max_columns:
            raise IngestFailure(
                f"the file has {count} columns; at most {self.max_columns} are allowed"
            )

    def _check_unique(self, names: list[str]) -> None:
        for name in self.wanted:
            if names.count(name) > 1:
                raise IngestFailure(f"column {name!r} appears more than once in the file")


class CsvReader(TableReader):
    """Comma-separated, UTF-8 (a BOM is fine), first non-blank line is the header, quoted
    fields may hold newlines. Header names are stripped of surrounding spaces."""

    def __enter__(self) -> CsvReader:
        # The limit is process-wide: raise it (never lower it) and check our own limit per row.
        csv.field_size_limit(max(csv.field_size_limit(), self.max_field_chars + 1))
        self._file = self.path.open(encoding="utf-8-sig", errors="strict", newline="")
        self._reader = csv.reader(self._file, strict=True)
        header = next((row for row in self._rows() if row), None)
        if header is None:
            raise IngestFailure("the file has no header row (it holds only blank lines)")
        self._check_width(len(header))
        self.columns = [name.strip() for name in header]
        self._check_unique(self.columns)
        self._index = {
            name: self.columns.index(name) for name in self.wanted if name in self.columns
        }
        return self

    def _rows(self) -> Iterator[list[str]]:
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = self._reader.line_num
                if "field limit" in str(exc):
                    raise IngestFailure(
                        f"line {line}: a field is longer than {self.max_field_chars} characters"
                    ) from None
                raise IngestFailure(f"line {line}: malformed CSV ({exc})") from None
            if row and max(map(len, row)) > self.max_field_chars:
                raise IngestFailure(
                    f"line {self._reader.line_num}: a field is longer than "
                    f"{self.max_field_chars} characters"
                )
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
        self._file = self.path.open(encoding="utf-8-sig", errors="strict")
        seen: dict[str, None] = {}
        for number, line in enumerate(self._file, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                hint = "" if line.lstrip().startswith("{") else " (is this really JSON Lines?)"
                raise IngestFailure(
                    f"line {number}: invalid JSON ({exc.msg} at column {exc.colno}){hint}"
                ) from None
            except RecursionError:
                raise IngestFailure(f"line {number}: JSON nested too deeply") from None
            if not isinstance(obj, dict):
                raise IngestFailure(
                    f"line {number}: expected a JSON object such as "
                    f'{{"text": "...", "label": "..."}}, got {json_type(obj)}'
                )
            if len(obj) > len(seen) or any(key not in seen for key in obj):
                seen.update(dict.fromkeys(obj))
                self._check_width(len(seen))
                self.columns = list(seen)
            values = {name: obj[name] for name in self.wanted if name in obj}
            if "\\u" in line:
                _check_encodable(values, f"line {number}")
            yield f"line {number}", values


class ParquetReader(TableReader):
    """Parquet through pyarrow, batch by batch, reading only the wanted columns."""

    def __enter__(self) -> ParquetReader:
        try:
            self._pf = pq.ParquetFile(self.path)
            schema = self._pf.schema_arrow
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise IngestFailure(f"the Parquet file is corrupt or unreadable: {exc}") from None
        self._check_width(len(schema.names))
        self.columns = list(schema.names)
        self._check_unique(self.columns)
        self.total_rows = self._pf.metadata.num_rows
        for name, kind in self.wanted.items():
            if name in self.columns:
                _check_arrow_type(name, kind, schema.field(name).type)
        return self

    def __iter__(self) -> Iterator[Row]:
        names = [name for name in self.wanted if name in self.columns]
        number = 0
        try:
            for batch in self._pf.iter_batches(batch_size=8192, columns=names):
                data = {name: batch.column(name).to_pylist() for name in names}
                for i in range(batch.num_rows):
                    number += 1
                    yield f"row {number}", {name: data[name][i] for name in names}
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise IngestFailure(
                f"the Parquet file is corrupt or unreadable near row {number + 1}: {exc}"
            ) from None


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _looks_like_text(head: bytes) -> bool:
    return b"\x00" not in head and first_invalid_utf8(io.BytesIO(head), final=False) is None


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
