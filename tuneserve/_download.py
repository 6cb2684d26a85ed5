"""Saving a streamed archive: where it goes, written whole or not at all."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import BinaryIO

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def filename_of(content_disposition: str | None, fallback: str) -> str:
    """The file name a ``Content-Disposition`` header gives, if it is a plain one."""
    if content_disposition:
        message = Message()
        message["content-disposition"] = content_disposition
        name = message.get_filename()
        if name and _SAFE_NAME.match(name) and name not in {".", ".."}:
            return name
    return fallback


def target_path(dest: str | os.PathLike[str], filename: str) -> Path:
    """``dest`` itself, or ``dest/filename`` when ``dest`` is a directory."""
    path = Path(dest)
    return path / filename if path.is_dir() else path


@contextmanager
def saving(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path``'s bytes to: ``path.part`` until the block ends, then renamed
    to ``path``; removed if the block fails, so ``path`` is whole or absent."""
    part = path.with_name(path.name + ".part")
    try:
        with part.open("wb") as out:
            yield out
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
