"""Merging a ``lora`` artifact into a plain ``kind: full`` artifact.

``export_merged(model_dir, dest)`` loads the base named by the artifact's manifest, applies the
adapter (``peft.PeftModel.from_pretrained``), folds the LoRA updates into the base weights and
puts the trained head in place (``merge_and_unload``), then writes the result with
:func:`worker.artifacts.write_artifact`: atomically, ``kind: full``, loadable by plain
``AutoModelForSequenceClassification.from_pretrained(dest)``. The source artifact's manifest
(task, labels, base_model, strategy, hyperparameters, metrics, ...) carries over; its
``adapter`` entry moves under ``merged_from``.

Command line: ``python -m worker.export MODEL_DIR DEST [--base BASE_DIR]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.contract.tasks import IMAGE_TASKS
from worker.artifacts import write_artifact
from worker.core.models import load_processor
from worker.serving.predictor import ArtifactError, load_lora_model, read_manifest
from worker.training.recipe import TrainedModel

#: manifest entries write_artifact recomputes or that describe only the adapter
_NOT_CARRIED = {"format_version", "kind", "files", "adapter", "backbone", "head", "max_length"}


def export_merged(
    model_dir: Path,
    dest: Path,
    *,
    resolve_base: Callable[[str], Path | None] | None = None,
    base_dir: Path | None = None,
) -> Path:
    """Write the merged ``kind: full`` form of the ``lora`` artifact ``model_dir`` to ``dest``.

    The base is ``base_dir`` when given, else found as :func:`load_predictor` finds it
    (``resolve_base(base_model.id)``, then ``base_model.path``).
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if manifest["kind"] != "lora":
        raise ArtifactError(f"{model_dir} is a {manifest['kind']!r} artifact, not 'lora'")
    if base_dir is not None:
        manifest["base_model"] = {**(manifest.get("base_model") or {}), "path": str(base_dir)}
        resolve_base = None
    peft_model: Any = load_lora_model(manifest, model_dir, resolve_base)
    merged = peft_model.merge_and_unload()
    merged.eval()
    base_model = dict(manifest.get("base_model") or {})
    trained = TrainedModel(
        kind="full",
        model=merged,
        tokenizer=load_processor(model_dir, images=manifest["task"] in IMAGE_TASKS),
        task=manifest["task"],
        label_names=list(manifest["labels"]),
        base_model_dir=Path(base_model.get("path") or ""),
        strategy=str(manifest.get("strategy", "lora")),
        max_length=int(manifest["max_length"]),
        metrics=dict(manifest.get("metrics") or {}),
    )
    carried = {key: value for key, value in manifest.items() if key not in _NOT_CARRIED}
    carried["merged_from"] = {"kind": "lora", "adapter": manifest.get("adapter")}
    return write_artifact(trained, Path(dest), manifest=carried)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.export",
        description="Merge a lora artifact into a full-weights artifact.",
    )
    parser.add_argument("model_dir", type=Path, help="the lora artifact directory")
    parser.add_argument("dest", type=Path, help="where the full artifact goes (must not exist)")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="the base model directory (default: base_model.path from the manifest)",
    )
    args = parser.parse_args(argv)
    try:
        dest = export_merged(args.model_dir, args.dest, base_dir=args.base)
    except (ArtifactError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
