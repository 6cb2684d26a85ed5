"""The SDK's version: the installed ``tuneserve`` distribution's, else ``0.0.0``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tuneserve")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
