"""Which format an uploaded table is: the format it claims (declared, else the extension),
checked against its first bytes (magic numbers, binary content, UTF-8) and, for Parquet, its
last bytes. The readers are in :mod:`app.datasets.readers` and
:mod:`app.datasets.parquet_reader`.

``UnicodeDecodeError`` escapes the text readers; :func:`first_invalid_utf8` then finds the
offset and :func:`utf8_message` says where.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path, PurePath
from typing import IO, Literal

from app.datasets.failures import IngestFailure
from app.datasets.report import ValidationReport
from app.errors import DatasetInvalid, UnsupportedMediaType

FormatName = Literal["csv", "jsonl", "parquet"]
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
    ".zip": "compressed uploads are not supported; upload the uncompressed file (a zip of "
    "images is an image dataset: task image-classification or image-multilabel)",
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


def detect_format(filename: str, head: bytes, declared: str | None = None) -> FormatName:
    """The file's format: ``declared`` if given, else its extension; checked against ``head``
    (its first bytes). Unknown format: 415. Content that contradicts it: 422 with a report."""
    fmt = claimed_format(filename, declared)
    try:
        check_head(fmt, head)
    except IngestFailure as exc:
        report = ValidationReport(format=fmt, errors=[str(exc)])
        raise DatasetInvalid(str(exc), details=report.model_dump()) from None
    return fmt


def claimed_format(filename: str, declared: str | None) -> FormatName:
    """The format the upload claims: the declared one if given, else the file's extension."""
    if declared is not None and declared.strip():
        key = declared.split(";")[0].strip().lower()
        if key in _DECLARED:
            return _DECLARED[key]
        raise UnsupportedMediaType(
            f"unsupported dataset format {declared!r}: the form field `format` takes csv, jsonl "
            "or parquet"
        )
    suffix = PurePath(filename).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    hint = f" ({_HINTS[suffix]})" if suffix in _HINTS else ""
    raise UnsupportedMediaType(
        f"cannot tell the format of {filename!r} from its extension {suffix or '(none)'!r}{hint}; "
        "supported: .csv, .jsonl/.ndjson, .parquet/.pq, or declare it with the form field "
        "`format` (csv, jsonl or parquet)"
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


def _looks_like_text(head: bytes) -> bool:
    return b"\x00" not in head and first_invalid_utf8(io.BytesIO(head), final=False) is None
