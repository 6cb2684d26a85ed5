"""Export variants that need torch: a ``lora`` artifact merged into a ``kind: full``
artifact, and a ``head`` artifact rebuilt as its architecture's own classification model.

``export_merged(model_dir, dest)`` loads the base named by the artifact's manifest, applies the
adapter (``peft.PeftModel.from_pretrained``), folds the LoRA updates into the base weights and
puts the trained head in place (``merge_and_unload``), then writes the result with
:func:`worker.artifacts.write_artifact`: atomically, ``kind: full``, loadable by plain
``AutoModelForSequenceClassification.from_pretrained(dest)``. The source artifact's manifest
(task, labels, base_model, strategy, hyperparameters, metrics, ...) carries over; its
``adapter`` entry moves under ``merged_from``.

``export_head_as_full(model_dir, dest)`` puts a head's weights into the linear classifier of
the encoder's own ``...ForSequenceClassification`` / ``...ForImageClassification``, where that
classifier reads exactly the head's pooled vector (``app.models.export_rules``), and checks on
one input that the result computes the served probe's logits; its ``head`` entry moves under
``converted_from``.

``build_export(lease)`` is the worker's side of ``GET /v1/models/{id}/export``: it builds the
claimed variant in a temporary directory, archives it (``app.models.export_archive``) into
``exports/{model_id}/{variant}-{token}.tar.gz`` atomically, renews the row's lease meanwhile,
and finishes the row (``app.models.export_lifecycle``), ready or failed with its error.

Command line: ``python -m worker.export MODEL_DIR DEST [--base BASE_DIR]`` (merges a ``lora``
artifact; a ``head`` artifact becomes a full model).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from app.atomic import atomic_file
from app.base_models.registry import get_base_model
from app.config import get_settings
from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS, PAIR_TASK
from app.db import session_scope
from app.models.export_archive import artifact_tar_gz
from app.models.export_lifecycle import LEASE_S, ExportClaim, finish_failed, finish_ready, renew
from app.models.export_rules import HeadNotConvertible, own_head_for
from app.models.export_service import exports_relpath
from app.models.orm import Model
from app.storage import Storage, private_dir
from worker.artifacts import write_artifact
from worker.core.long_text import LongText
from worker.core.models import load_classifier, load_processor
from worker.serving.predictor import (
    ArtifactError,
    Predictor,
    encoder_dir,
    load_lora_model,
    load_predictor,
    read_manifest,
)
from worker.training.recipe import TrainedModel

log = logging.getLogger(__name__)

#: manifest entries write_artifact recomputes or that describe only the adapter or head
_NOT_CARRIED = {
    *("format_version", "kind", "files", "adapter", "backbone", "head"),
    *("max_length", "long_text", "max_chunks"),
}
#: how far the full model's logits may be from the probe's
_TOLERANCE = 1e-4
CPU = torch.device("cpu")
ResolveBase = Callable[[str], Path | None]


def _trained(manifest: dict[str, Any], model_dir: Path, model: nn.Module) -> TrainedModel:
    base_model = dict(manifest.get("base_model") or {})
    return TrainedModel(
        kind="full",
        model=model.eval(),
        tokenizer=load_processor(model_dir, images=manifest["task"] in IMAGE_TASKS),
        task=manifest["task"],
        label_names=list(manifest["labels"]),
        base_model_dir=Path(base_model.get("path") or ""),
        strategy=str(manifest.get("strategy", manifest["kind"])),
        max_length=int(manifest["max_length"]),
        metrics=dict(manifest.get("metrics") or {}),
        long_text=LongText.from_manifest(manifest),
    )


def _carried(manifest: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in manifest.items() if key not in _NOT_CARRIED}


def export_merged(
    model_dir: Path,
    dest: Path,
    *,
    resolve_base: ResolveBase | None = None,
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
    carried = _carried(manifest)
    carried["merged_from"] = {"kind": "lora", "adapter": manifest.get("adapter")}
    return write_artifact(_trained(manifest, model_dir, merged), Path(dest), manifest=carried)


def _check_inputs(task: str) -> list[Any]:
    if task in IMAGE_TASKS:
        buffer = io.BytesIO()
        Image.radial_gradient("L").convert("RGB").save(buffer, format="PNG")
        return [buffer.getvalue()]
    if task == PAIR_TASK:
        return [["a short sentence to check", "and its pair"]]
    return ["a short sentence to check the export", "another one"]


def export_head_as_full(
    model_dir: Path, dest: Path, *, resolve_base: ResolveBase | None = None
) -> Path:
    """Write the ``head`` artifact ``model_dir`` as a ``kind: full`` artifact to ``dest``;
    :class:`HeadNotConvertible` when no classification model computes its logits."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if manifest["kind"] != "head":
        raise ArtifactError(f"{model_dir} is a {manifest['kind']!r} artifact, not 'head'")
    spec = manifest["head"]
    source = encoder_dir(manifest, resolve_base, model_dir)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    own = own_head_for(str(config.get("model_type", "")), str(spec["pooling"]))
    model = load_classifier(
        source,
        label_names=list(manifest["labels"]),
        multilabel=manifest["task"] in MULTILABEL_TASKS,
    )
    linear = model.get_submodule(own.linear)
    state = load_file(str(model_dir / spec["file"]))
    if not isinstance(linear, nn.Linear) or linear.weight.shape != state["weight"].shape:
        raise HeadNotConvertible(f"{own.architecture}'s classifier does not fit this head.")
    with torch.no_grad():
        linear.weight.copy_(state["weight"])
        linear.bias.copy_(state["bias"])
    trained = _trained(manifest, model_dir, model)
    probe = load_predictor(model_dir, resolve_base=resolve_base, device=CPU)
    full = Predictor(
        model=model.to(CPU),
        tokenizer=trained.tokenizer,
        task=trained.task,
        labels=trained.label_names,
        max_length=probe.max_length,
        device=CPU,
        long_text=probe.long_text,
    )
    inputs = _check_inputs(trained.task)
    expected, actual = probe.logits(inputs), full.logits(inputs)
    if not torch.allclose(expected, actual, atol=_TOLERANCE, rtol=_TOLERANCE):
        gap = float((expected - actual).abs().max())
        raise HeadNotConvertible(
            f"{own.architecture} built from this head computes other logits than the served "
            f"model (largest difference {gap:.3g}); the base's weights may lack a part of it."
        )
    carried = _carried(manifest)
    carried["converted_from"] = {"kind": "head", "head": spec, "architecture": own.architecture}
    return write_artifact(trained, Path(dest), manifest=carried)


class _Heartbeat:
    """Renews an export's lease every ``LEASE_S / 4`` seconds until stopped."""

    def __init__(self, lease: ExportClaim) -> None:
        self.lease = lease
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="export-lease", daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(LEASE_S / 4):
            try:
                with session_scope() as session:
                    if not renew(session, self.lease):
                        return  # lost: finishing will say so
            except Exception:
                log.warning("could not renew the lease of %s", self.lease.export_id, exc_info=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()


def _error(exc: BaseException, model_dir: Path, model_id: str) -> dict[str, Any]:
    """The row's error: what the client is told (no server paths), and its status."""
    message = str(exc).replace(str(model_dir), model_id)
    if isinstance(exc, HeadNotConvertible):
        return {"code": "export_unsupported", "message": message, "status": 422}
    if isinstance(exc, ArtifactError):
        return {"code": "artifact_unusable", "message": message, "status": 409}
    message = f"The export could not be built ({type(exc).__name__})."
    return {"code": "export_failed", "message": message, "status": 409}


def _build(lease: ExportClaim, model_dir: Path, storage: Storage, relative: str) -> int:
    """Build the variant and write its archive at ``relative``; the archive's size."""
    settings = get_settings()

    def resolve(base_id: str) -> Path | None:
        info = get_base_model(settings, base_id)
        return info.path if info is not None else None

    scratch = private_dir(storage.root / "tmp" / "exports")
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        artifact = Path(tmp) / lease.model_id
        if lease.variant == "merged":
            export_merged(model_dir, artifact, resolve_base=resolve)
        else:
            export_head_as_full(model_dir, artifact, resolve_base=resolve)
        dest = storage.path(relative)
        with atomic_file(dest) as handle:
            for chunk in artifact_tar_gz(artifact, arcname=lease.model_id):
                handle.write(chunk)
    return dest.stat().st_size


def build_export(lease: ExportClaim) -> None:
    """Build the claimed export, then finish its row (ready, or failed with the error)."""
    storage = Storage.from_settings(get_settings())
    with session_scope() as session:
        model = session.get(Model, lease.model_id)
        storage_path = model.storage_path if model is not None else None
    relative = f"{exports_relpath(lease.model_id)}/{lease.variant}-{lease.token}.tar.gz"
    model_dir = storage.path(storage_path or storage.model_relpath(lease.model_id))
    try:
        with _Heartbeat(lease):
            size = _build(lease, model_dir, storage, relative)
    except Exception as exc:
        log.exception("export %s (%s) failed", lease.export_id, lease.variant)
        with session_scope() as session:
            finish_failed(session, lease, error=_error(exc, model_dir, lease.model_id))
        return
    with session_scope() as session:
        finished = finish_ready(session, lease, archive_path=relative, size=size)
    if not finished:  # the row was taken or deleted (its model with it): the archive is nobody's
        storage.remove(relative)
    log.info("export %s (%s) ready: %d bytes", lease.export_id, lease.variant, size)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.export",
        description="Merge a lora artifact, or rebuild a head artifact, as a full artifact.",
    )
    parser.add_argument("model_dir", type=Path, help="the lora or head artifact directory")
    parser.add_argument("dest", type=Path, help="where the full artifact goes (must not exist)")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="the base model directory (default: base_model.path from the manifest)",
    )
    args = parser.parse_args(argv)
    try:
        if read_manifest(args.model_dir)["kind"] == "head":
            resolve = (lambda _: args.base) if args.base is not None else None
            dest = export_head_as_full(args.model_dir, args.dest, resolve_base=resolve)
        else:
            dest = export_merged(args.model_dir, args.dest, base_dir=args.base)
    except (ArtifactError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
