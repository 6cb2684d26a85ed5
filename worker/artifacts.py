"""Writing a trained model as a self-describing artifact directory, atomically.

Layout (``manifest.json`` beside safetensors weights and the tokenizer files):

- ``kind: full`` -- the whole ``AutoModelForSequenceClassification`` (``save_pretrained``,
  safetensors, ``id2label``/``label2id``/``problem_type`` in ``config.json``): plain
  ``AutoModelForSequenceClassification.from_pretrained(dir)`` loads it.
- ``kind: head`` -- only ``head.safetensors`` (``weight``, ``bias`` of the linear head); the
  manifest's ``head`` entry says how to pool, ``base_model`` names the frozen base (id, path).
  When training changed the encoder too (contrastive, dapt), it is saved under ``encoder/``
  (safetensors) and the manifest's ``backbone`` says so; the head then sits on that encoder.
- ``kind: lora`` -- a PEFT adapter, no base weights: ``adapter_config.json`` and
  ``adapter_model.safetensors`` (``PeftModel.save_pretrained``: the LoRA matrices and the
  trained head, peft's ``modules_to_save``); the manifest's ``adapter`` entry summarises it and
  ``base_model`` names the frozen base (id, path), as for heads (``encoder/`` likewise).
  ``worker.export.export_merged`` turns it into a ``kind: full`` artifact.

The directory is built as ``.tmp-*`` beside ``dest`` and renamed into place; on any error the
temporary directory is removed, so a reader never sees half an artifact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, get_args

from safetensors.torch import save_file

from app.atomic import atomic_dir
from worker.training.recipe import ArtifactKind, TrainedModel

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
HEAD_WEIGHTS = "head.safetensors"
BACKBONE_DIR = "encoder"
#: every ``kind`` a manifest may name
ARTIFACT_KINDS: frozenset[str] = frozenset(get_args(ArtifactKind))
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): sha256_file(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }


def _save_weights(trained: TrainedModel, directory: Path) -> dict[str, Any]:
    """Write weights + tokenizer; return the manifest entries this kind adds."""
    trained.tokenizer.save_pretrained(directory)
    if trained.kind == "full":
        trained.model.save_pretrained(directory, safe_serialization=True)  # type: ignore[operator]
        return {}
    if trained.kind == "lora":
        return _save_adapter(trained, directory)
    head_state = {
        key: value.detach().cpu().contiguous() for key, value in trained.model.state_dict().items()
    }
    save_file(head_state, str(directory / HEAD_WEIGHTS), metadata={"format": "pt"})
    weight = head_state["weight"]
    extra: dict[str, Any] = {}
    if trained.backbone is not None:
        trained.backbone.save_pretrained(  # type: ignore[operator]
            directory / BACKBONE_DIR, safe_serialization=True
        )
        extra["backbone"] = BACKBONE_DIR
    return {
        **extra,
        "head": {
            "file": HEAD_WEIGHTS,
            "type": "linear",
            "pooling": trained.pooling,
            "in_features": int(weight.shape[1]),
            "out_features": int(weight.shape[0]),
        },
    }


def _save_adapter(trained: TrainedModel, directory: Path) -> dict[str, Any]:
    """``kind: lora``: the adapter and the trained head (no base weights)."""
    model: Any = trained.model
    model.save_pretrained(directory, safe_serialization=True, save_embedding_layers=False)
    (directory / "README.md").unlink(missing_ok=True)  # peft's model-card stub
    config = model.peft_config["default"]
    trainable, total = model.get_nb_trainable_parameters()
    extra: dict[str, Any] = {}
    if trained.backbone is not None:  # an encoder changed before the adapter trained (dapt)
        trained.backbone.save_pretrained(  # type: ignore[operator]
            directory / BACKBONE_DIR, safe_serialization=True
        )
        extra["backbone"] = BACKBONE_DIR
    return {
        **extra,
        "adapter": {
            "type": "lora",
            "file": ADAPTER_WEIGHTS,
            "config": ADAPTER_CONFIG,
            "r": int(config.r),
            "alpha": int(config.lora_alpha),
            "dropout": float(config.lora_dropout),
            "target_modules": sorted(config.target_modules or []),
            "modules_to_save": sorted(set(config.modules_to_save or [])),
            "trainable_parameters": int(trainable),
            "total_parameters": int(total),
        },
    }


def write_artifact(trained: TrainedModel, dest: Path, *, manifest: dict[str, Any]) -> Path:
    """Write ``trained`` to ``dest`` (which must not exist) and return ``dest``.

    ``manifest`` is the caller's description (task, labels, base_model {id, path}, strategy,
    hyperparameters, metrics, ...); this adds ``format_version``, ``kind``, ``max_length``,
    ``long_text`` and ``max_chunks``,
    ``files`` (sha256 of every other file), for heads ``head``, for adapters ``adapter``.
    ``task`` and ``labels`` come from ``trained``; ``base_model.path`` defaults to the directory
    it trained from.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"artifact destination already exists: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(dest) as tmp:
        extra = _save_weights(trained, tmp)
        base_model = dict(manifest.get("base_model") or {})
        base_model.setdefault("path", str(trained.base_model_dir))
        full_manifest = {
            **manifest,
            "format_version": FORMAT_VERSION,
            "kind": trained.kind,
            "task": trained.task,
            "labels": list(trained.label_names),
            "base_model": base_model,
            "max_length": trained.max_length,
            **trained.long_text.manifest(),
            **extra,
            "files": _file_hashes(tmp),
        }
        full_manifest.setdefault("strategy", trained.strategy)
        full_manifest.setdefault("metrics", trained.metrics)
        (tmp / MANIFEST_NAME).write_text(
            json.dumps(full_manifest, indent=2, sort_keys=True), encoding="utf-8"
        )
    return dest
