"""The mode a file or directory would have had if created with ``open``/``mkdir``.

``tempfile.mkdtemp``/``mkstemp`` create 0700/0600 whatever the umask; an artifact written
through a temporary path then takes the mode the process's umask allows (0700/0600 under
``tuneserve up``'s umask 077, 0755/0644 under the usual 022).
"""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    current = os.umask(0o077)
    os.umask(current)
    return current


def chmod_as_created(path: str | Path, *, directory: bool) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())
