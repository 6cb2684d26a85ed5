"""Stream a multipart upload to disk under a byte cap, never holding the body in memory.

FastAPI's ``UploadFile`` would spool the whole body before the route runs, with no cap; here
the request stream is fed chunk by chunk to python-multipart's parser: the file part goes to a
temporary file, the small text fields are kept, and the read stops with 413 past the cap.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32


@dataclass
class ReceivedUpload:
    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    def __init__(self, dest: Path, cap: int) -> None:
        self.dest = dest
        self.cap = cap
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.size = 0
        self.digest = hashlib.sha256()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._buffer = bytearray()
        self._fh: IO[bytes] | None = None

    # python-multipart callbacks
    def on_part_begin(self) -> None:
        self._headers = {}
        self._buffer = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._name = name
        self._is_file = b"filename" in options
        if self._is_file:
            if name != "file":
                raise InvalidInput(f"Unexpected file field {name!r}; send the data as 'file'.")
            if self._fh is not None:
                raise InvalidInput("Send exactly one file.")
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self._fh = self.dest.open("wb")
        elif len(self.fields) >= MAX_FIELDS:
            raise InvalidInput("Too many form fields.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.size += len(chunk)
            if self.size > self.cap:
                raise PayloadTooLarge(
                    f"The file is larger than the upload limit of {self.cap} bytes.",
                    details={"max_upload_bytes": self.cap},
                )
            self.digest.update(chunk)
            assert self._fh is not None
            self._fh.write(chunk)
        else:
            self._buffer += chunk
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise PayloadTooLarge(f"Form field {self._name!r} is too large.")

    def on_part_end(self) -> None:
        if not self._is_file and self._name:
            try:
                self.fields[self._name] = self._buffer.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"Form field {self._name!r} is not UTF-8.") from exc

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


async def receive_upload(
    *,
    content_type: str | None,
    content_length: str | None,
    stream: AsyncIterator[bytes],
    dest: Path,
    cap: int,
) -> ReceivedUpload:
    """Read a multipart body with one file part named ``file``; delete ``dest`` on failure."""
    ctype, options = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedMediaType("Send the dataset as multipart/form-data with a 'file' field.")
    if content_length and content_length.isdigit() and int(content_length) > cap + MAX_FIELD_BYTES:
        raise PayloadTooLarge(
            f"The upload is larger than the limit of {cap} bytes.",
            details={"max_upload_bytes": cap},
        )
    receiver = _Receiver(dest, cap)
    callbacks = {
        name: getattr(receiver, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except BaseException as exc:
        receiver.close()
        dest.unlink(missing_ok=True)
        if isinstance(exc, (InvalidInput, PayloadTooLarge)):
            raise
        if isinstance(exc, Exception):
            raise InvalidInput(f"Malformed multipart body: {exc}") from exc
        raise
    receiver.close()
    if receiver.filename is None:
        dest.unlink(missing_ok=True)
        raise InvalidInput("No file in the upload: send the data as the form field 'file'.")
    return ReceivedUpload(
        path=dest,
        filename=receiver.filename,
        size=receiver.size,
        sha256=receiver.digest.hexdigest(),
        fields=receiver.fields,
    )
