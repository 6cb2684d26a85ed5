"""Request bodies that are more than JSON: a dataset upload and image predictions.

Each becomes a :data:`~tuneserve._core.BodyFactory`, called once per attempt: a file given
by path is opened for that attempt (httpx streams it in chunks) and closed after it, so a
retried upload sends the whole file again. Nothing here imports pandas: a DataFrame is
recognised by its ``to_csv`` method.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from tuneserve._core import BodyFactory

DataFormat = Literal["csv", "jsonl", "parquet"]
_CONTENT_TYPES = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


@runtime_checkable
class DataFrameLike(Protocol):
    """What the SDK needs of a pandas (or pandas-like) DataFrame."""

    def to_csv(self, *args: Any, **kwargs: Any) -> Any: ...


#: what ``datasets.upload`` takes: a path, the file's bytes, a DataFrame, or rows as dicts
UploadData = str | os.PathLike[str] | bytes | DataFrameLike | Sequence[Mapping[str, Any]]


def dataset_body(
    data: UploadData,
    *,
    fields: Mapping[str, str | None],
    filename: str | None,
    format: DataFormat | None,
) -> BodyFactory:
    """The multipart body of ``POST /v1/datasets``: ``file`` plus the non-None ``fields``."""
    form = {k: v for k, v in fields.items() if v is not None}
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"no dataset file at {path}")
        name = filename or path.name
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"

        def from_path(files: ExitStack) -> dict[str, Any]:
            handle = files.enter_context(path.open("rb"))
            return {"files": {"file": (name, handle, ctype)}, "data": _with_format(form, format)}

        return from_path
    content, name, fmt = _in_memory(data, filename=filename, format=format)
    ctype = _CONTENT_TYPES.get(fmt or "", "application/octet-stream")
    body = {"files": {"file": (name, content, ctype)}, "data": _with_format(form, fmt)}
    return lambda files: body


def _with_format(form: dict[str, str], fmt: str | None) -> dict[str, str]:
    return {**form, "format": fmt} if fmt else form


def _in_memory(
    data: UploadData, *, filename: str | None, format: DataFormat | None
) -> tuple[bytes, str, str | None]:
    """The file's bytes, name and format for data that is not a path."""
    if isinstance(data, bytes | bytearray | memoryview):
        if filename is None and format is None:
            raise ValueError("uploading bytes needs a filename (e.g. 'train.csv') or a format")
        fmt = format
        return bytes(data), filename or f"data.{format}", fmt
    if isinstance(data, DataFrameLike):
        fmt = format or ("parquet" if find_spec("pyarrow") else "csv")
        return _dataframe_bytes(data, fmt), filename or f"data.{fmt}", fmt
    if isinstance(data, Sequence) and not isinstance(data, str):
        rows = [row for row in data if isinstance(row, Mapping)]
        if len(rows) != len(data):
            raise TypeError("a list to upload must hold only dicts (one per row)")
        if format not in (None, "jsonl"):
            raise ValueError("rows given as dicts are sent as JSON Lines (format='jsonl')")
        lines = (json.dumps(dict(row), ensure_ascii=False) for row in rows)
        return "".join(f"{line}\n" for line in lines).encode(), filename or "data.jsonl", "jsonl"
    raise TypeError(
        f"upload takes a path, bytes, a DataFrame or a list of dicts, not {type(data).__name__}"
    )


def _dataframe_bytes(frame: DataFrameLike, fmt: str) -> bytes:
    if fmt == "csv":
        return str(frame.to_csv(index=False)).encode()
    if fmt == "jsonl":
        return str(frame.to_json(orient="records", lines=True)).encode()  # type: ignore[attr-defined]
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)  # type: ignore[attr-defined]
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r}: csv, jsonl or parquet")


ImageData = str | os.PathLike[str] | bytes


def images_body(images: Sequence[ImageData], *, top_k: int) -> BodyFactory:
    """The multipart body of an image prediction: each image in ``files``, and ``top_k``."""
    if isinstance(images, str | bytes) or not images:
        raise ValueError("images must be a non-empty list of paths or bytes")

    def build(files: ExitStack) -> dict[str, Any]:
        parts: list[tuple[str, tuple[str, Any, str]]] = []
        for i, image in enumerate(images):
            if isinstance(image, bytes | bytearray):
                parts.append(("files", (f"image-{i}", bytes(image), "application/octet-stream")))
            else:
                path = Path(image)
                ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                parts.append(("files", (path.name, files.enter_context(path.open("rb")), ctype)))
        return {"files": parts, "data": {"top_k": str(top_k)}}

    return build
