"""Where the command line finds the service: flags, then the environment, then a config file.

``--url`` / ``--api-key`` win; else ``TUNESERVE_URL`` / ``TUNESERVE_API_KEY``; else the TOML
file named by ``TUNESERVE_CONFIG`` or, by default, ``~/.config/tuneserve/config.toml``::

    url = "http://127.0.0.1:8000"
    api_key = "ts_..."
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """The config file cannot be read."""


def config_path() -> Path:
    named = os.environ.get("TUNESERVE_CONFIG")
    if named:
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tuneserve" / "config.toml"


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str | None


def resolve(url: str | None, api_key: str | None) -> Target:
    """The service's URL and key from the flags, the environment and the config file."""
    file = _read(config_path())
    return Target(
        url=url or os.environ.get("TUNESERVE_URL") or str(file.get("url") or DEFAULT_URL),
        api_key=api_key or os.environ.get("TUNESERVE_API_KEY") or _str(file.get("api_key")),
    )


def _str(value: object) -> str | None:
    return str(value) if value else None


def _read(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
