"""Where artifacts live under the data directory. Paths in the database are relative."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from app.config import Settings

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) readable by this user only; tighten an existing
    directory that others could read (an older data directory was created 0755)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> None:
    """Make an existing file readable by this user only (no-op when it does not exist)."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(PRIVATE_FILE_MODE)
    except FileNotFoundError:
        pass


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        return cls(settings.artifacts_dir)

    def path(self, relative: str) -> Path:
        full = (self.root / relative).resolve()
        if self.root not in full.parents and full != self.root:
            raise ValueError(f"path escapes the artifact store: {relative!r}")
        return full

    def dataset_relpath(self, dataset_id: str) -> str:
        return f"datasets/{dataset_id}/data.parquet"

    def model_relpath(self, model_id: str) -> str:
        return f"models/{model_id}"

    def report_relpath(self, job_id: str) -> str:
        """A job's evaluation report: ``report.json`` and ``plots/*.png``, written as one
        directory (temporary name, then rename) by the worker."""
        return f"reports/{job_id}"

    def uploads_dir(self) -> Path:
        d = self.root / "tmp" / "uploads"
        d.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        return d

    def new_upload_path(self) -> Path:
        return self.uploads_dir() / f"{uuid.uuid4().hex}.upload"

    def remove(self, relative: str) -> None:
        """Remove a file or directory; rename first so a reader never sees half of it."""
        target = self.path(relative)
        if not target.exists():
            return
        doomed = target.with_name(f".deleting-{uuid.uuid4().hex}-{target.name}")
        os.replace(target, doomed)
        if doomed.is_dir():
            shutil.rmtree(doomed, ignore_errors=True)
        else:
            doomed.unlink(missing_ok=True)
