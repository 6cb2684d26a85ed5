"""How a sentence-transformers directory says its embeddings are pooled, read in one place:
the base-model listing shows it and the worker's ``auto`` pooling trains and serves with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

CONFIG: Final = Path("1_Pooling") / "config.json"
#: ``1_Pooling/config.json`` flags and the mode each means, in the order they are checked
FLAGS: tuple[tuple[str, str], ...] = (
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
)


def declared_pooling(model_dir: Path) -> tuple[str | None, dict[str, Any] | None]:
    """``(mode, config)``: the first flag set in ``model_dir``'s pooling config, and the config
    itself; ``(None, None)`` when the directory has none, ``(None, config)`` when it sets none
    of the known flags."""
    path = model_dir / CONFIG
    if not path.is_file():
        return None, None
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    for flag, mode in FLAGS:
        if config.get(flag):
            return mode, config
    return None, config
