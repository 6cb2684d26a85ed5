"""Answer predict requests on an inference worker with a per-process model cache."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from app.base_models.registry import get_base_model
from app.config import get_settings
from app.storage import Storage
from worker.serving.cache import ModelCache
from worker.serving.predictor import Predictor, load_predictor


@lru_cache
def model_cache() -> ModelCache[Predictor]:
    settings = get_settings()
    return ModelCache(max_items=settings.model_cache_size, max_bytes=settings.model_cache_bytes)


def _resolve_base(model_id: str) -> Path | None:
    info = get_base_model(get_settings(), model_id)
    return info.path if info is not None else None


def predict(*, model_id: str, storage_path: str, inputs: list[Any], top_k: int) -> list[dict]:
    storage = Storage.from_settings(get_settings())
    model_dir = storage.path(storage_path)

    def load() -> Predictor:
        if not (model_dir / "manifest.json").is_file():
            raise FileNotFoundError(f"model {model_id} has no artifact at {storage_path}")
        return load_predictor(model_dir, resolve_base=_resolve_base)

    predictor = model_cache().get_or_load(model_id, load)
    normalised = [tuple(x) if isinstance(x, list) else x for x in inputs]
    return predictor.predict(normalised, top_k=top_k)
