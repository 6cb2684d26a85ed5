"""Atomic, durable writes: every file or directory a reader may see appears whole or not at all.

A file (``atomic_file`` / ``AtomicFile``) is written to a ``.tmp-*`` file beside its
destination, flushed, fsynced, given the mode the process umask allows (or the mode asked
for), renamed onto the destination with ``os.replace`` and its directory fsynced. A directory
(``atomic_dir``) is built as a ``.tmp-*`` sibling; its files and subdirectories are fsynced,
it takes the umask's mode, is renamed into place and its parent fsynced. Writers that keep a
manifest-written-last convention write the manifest last inside the block, as before. On any
error the temporary file or directory is removed and the destination is left as it was.

Writers that go through a library (pyarrow, safetensors, matplotlib) write to the open handle
or into the temporary directory; the helper does the fsync and the rename.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    current = os.umask(0o077)
    os.umask(current)
    return current


def chmod_as_created(path: str | Path, *, directory: bool) -> None:
    """Give ``path`` the mode ``open``/``mkdir`` would have: ``tempfile`` creates 0600/0700
    whatever the umask (0700/0600 under ``tuneserve up``'s umask 077, 0755/0644 under 022)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def fsync_dir(path: str | Path) -> None:
    """fsync a directory, so a rename or creation in it survives a crash (best effort: some
    file systems refuse to open or fsync a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and directory under ``root`` (``root`` included)."""
    for parent, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(parent, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(parent)


class AtomicFile:
    """An open ``.tmp-*<suffix>`` file beside ``dest``; ``commit`` publishes it, ``abort``
    removes it. For writers that keep the file open across calls; else use ``atomic_file``."""

    def __init__(self, dest: str | Path, *, suffix: str = "", mode: int | None = None) -> None:
        self.dest = Path(dest)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self._mode = mode
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=self.dest.parent)
        self.tmp = Path(tmp)
        self.handle: BinaryIO = os.fdopen(fd, "wb")

    def commit(self) -> Path:
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            if self._mode is None:
                chmod_as_created(self.tmp, directory=False)  # mkstemp creates 0600
            else:
                os.chmod(self.tmp, self._mode)
            os.replace(self.tmp, self.dest)
        except BaseException:
            self.abort()
            raise
        fsync_dir(self.dest.parent)
        return self.dest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(
    dest: str | Path, *, suffix: str = "", mode: int | None = None
) -> Iterator[BinaryIO]:
    """Yield a binary handle; when the block ends normally its bytes replace ``dest``."""
    writer = AtomicFile(dest, suffix=suffix, mode=mode)
    try:
        yield writer.handle
    except BaseException:
        writer.abort()
        raise
    writer.commit()


@contextlib.contextmanager
def atomic_dir(
    dest: str | Path, *, replace: bool = False, prefix: str = TMP_PREFIX
) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``dest``; when the block ends normally it is
    fsynced and renamed to ``dest``. With ``replace`` an existing ``dest`` is first renamed
    aside and deleted; without it an existing non-empty ``dest`` makes the rename fail."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        chmod_as_created(tmp, directory=True)  # mkdtemp creates 0700
        if replace and dest.exists():
            doomed = dest.with_name(f".deleting-{uuid.uuid4().hex}-{dest.name}")
            os.rename(dest, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(dest.parent)
