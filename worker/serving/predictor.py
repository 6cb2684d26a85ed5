"""Loading an artifact directory for inference and predicting labels with scores.

``load_predictor`` checks every file against the sha256 in ``manifest.json`` before anything
is loaded, reads weights from safetensors only and never runs remote code. A ``lora`` artifact
is served unmerged: the base plus the adapter as a ``peft.PeftModel``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS, PAIR_TASK
from worker.artifacts import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    ARTIFACT_KINDS,
    MANIFEST_NAME,
    sha256_file,
)
from worker.core.data import effective_max_length, move_batch, windows_batch
from worker.core.device import autocast, autocast_as, select_device
from worker.core.images import decode, pixel_inputs
from worker.core.long_text import TRUNCATE, LongText, encode_windows, pool_windows, split_windows
from worker.core.models import load_classifier, load_encoder, load_processor
from worker.core.pooling import PoolingMode, pool
from worker.evaluation.calibration import Calibration
from worker.serving.outputs import predictions_from_logits
from worker.training.recipe import TrainedModel

#: texts, text pairs, or (image tasks) encoded image files
PredictInputs = list[str] | list[tuple[str, str]] | list[list[str]] | list[bytes]


class ArtifactError(ValueError):
    """The artifact directory is incomplete, altered or unreadable."""


class ProbeClassifier(nn.Module):
    """A frozen backbone, a pooling mode and a linear head: logits like a full model."""

    def __init__(self, backbone: nn.Module, head: nn.Linear, pooling: PoolingMode) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pooling = pooling

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        outputs = self.backbone(**inputs)
        pooled = pool(outputs, inputs.get("attention_mask"), self.pooling)
        logits: torch.Tensor = self.head(pooled)
        return logits


class Predictor:
    """A loaded model: ``predict`` maps inputs to labels and scores."""

    def __init__(
        self,
        *,
        model: nn.Module,
        tokenizer: Any,
        task: str,
        labels: list[str],
        max_length: int,
        device: torch.device,
        batch_size: int = 32,
        calibration: Calibration | None = None,
        long_text: LongText = TRUNCATE,
    ) -> None:
        self.model = model.eval()
        #: temperature (scores) and per-label thresholds (multi-label decisions) fitted on the
        #: validation set after training; the identity when none were fitted
        self.calibration = calibration or Calibration()
        self.tokenizer = tokenizer
        self.task = task
        self.labels = labels
        self.max_length = max_length
        #: how texts beyond ``max_length`` are read: as in training
        self.long_text = long_text
        self.device = device
        self.batch_size = batch_size
        tensors = [*model.parameters(), *model.buffers()]
        #: approximate memory of the loaded weights, for the cache's budget
        self.nbytes: int = sum(t.numel() * t.element_size() for t in tensors)

    def _encode(self, batch: Sequence[Any]) -> dict[str, torch.Tensor]:
        if self.task in IMAGE_TASKS:
            if not all(isinstance(item, bytes) for item in batch):
                raise ValueError(f"task {self.task} takes image files")
            images = [decode(item) for item in batch]
            return move_batch(pixel_inputs(self.tokenizer, images), self.device)
        if self.task == PAIR_TASK:
            if not all(not isinstance(item, str) and len(item) == 2 for item in batch):
                raise ValueError("text-pair-classification takes [text, text_pair] inputs")
            firsts, seconds = [str(a) for a, _ in batch], [str(b) for _, b in batch]
        else:
            if not all(isinstance(item, str) for item in batch):
                raise ValueError(f"task {self.task} takes plain text inputs")
            firsts, seconds = list(batch), None
        windows = encode_windows(
            self.tokenizer, firsts, seconds, max_length=self.max_length, long_text=self.long_text
        )
        return move_batch(windows_batch(self.tokenizer, windows), self.device)

    def logits(self, inputs: PredictInputs, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Raw logits, shape (len(inputs), labels), float32 on the CPU; computed under
        ``dtype`` autocast when given (else the device's default: bf16 on CUDA)."""
        chunks: list[torch.Tensor] = []
        precision = autocast(self.device) if dtype is None else autocast_as(self.device, dtype)
        with torch.inference_mode(), precision:
            for start in range(0, len(inputs), self.batch_size):
                batch, windows = split_windows(
                    self._encode(inputs[start : start + self.batch_size])
                )
                outputs = self.model(**batch)
                logits = outputs if isinstance(outputs, torch.Tensor) else outputs.logits
                if windows is not None:
                    logits = pool_windows(logits, windows)
                chunks.append(logits.float().cpu())
        if not chunks:
            return torch.empty(0, len(self.labels))
        return torch.cat(chunks)

    def predict(self, inputs: PredictInputs, top_k: int = 1) -> list[dict[str, Any]]:
        """One dict per input (see :func:`worker.serving.outputs.predictions_from_logits`)."""
        return predictions_from_logits(
            self.logits(inputs),
            labels=self.labels,
            multilabel=self.task in MULTILABEL_TASKS,
            calibration=self.calibration,
            top_k=top_k,
        )


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The manifest, after checking every listed file's sha256."""
    manifest_path = model_dir / MANIFEST_NAME
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"cannot read {manifest_path}: {error}") from error
    if manifest.get("format_version") != 1 or manifest.get("kind") not in ARTIFACT_KINDS:
        raise ArtifactError(f"{manifest_path}: unsupported format_version or kind")
    root = model_dir.resolve()
    for relative, expected in manifest.get("files", {}).items():
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ArtifactError(f"artifact file {relative!r} is missing from {model_dir}")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"artifact file {relative!r} in {model_dir} fails its sha256 check "
                f"(manifest {expected[:12]}..., file {actual[:12]}...): refusing to load"
            )
    return manifest


def encoder_dir(
    manifest: dict[str, Any],
    resolve_base: Callable[[str], Path | None] | None,
    model_dir: Path,
) -> Path:
    """The directory of the encoder a ``head`` or ``lora`` artifact sits on: its own
    ``encoder/`` when training changed the encoder, else the referenced base model."""
    if manifest.get("backbone"):  # the encoder trained with the head ships inside the artifact
        inner = (model_dir / str(manifest["backbone"])).resolve()
        if not inner.is_relative_to(model_dir.resolve()) or not inner.is_dir():
            raise ArtifactError(f"the artifact's encoder {manifest['backbone']!r} is missing")
        return inner
    base = manifest.get("base_model") or {}
    resolved = resolve_base(base["id"]) if resolve_base and base.get("id") else None
    if resolved is None and base.get("path"):
        resolved = Path(base["path"])
    if resolved is None or not Path(resolved).is_dir():
        raise ArtifactError(f"base model {base.get('id')!r} of this head is not available")
    return Path(resolved)


def load_lora_model(
    manifest: dict[str, Any],
    model_dir: Path,
    resolve_base: Callable[[str], Path | None] | None = None,
) -> nn.Module:
    """The base with the artifact's adapter and head, as an unmerged ``PeftModel`` (eval)."""
    from peft import PeftModel  # imported here: only adapters need it

    listed = manifest.get("files", {})
    if ADAPTER_WEIGHTS not in listed or ADAPTER_CONFIG not in listed:
        raise ArtifactError(f"the adapter files of {model_dir} are not in its manifest")
    base = load_classifier(
        encoder_dir(manifest, resolve_base, model_dir),
        label_names=list(manifest["labels"]),
        multilabel=manifest["task"] in MULTILABEL_TASKS,
    )
    model: nn.Module = PeftModel.from_pretrained(base, model_dir, is_trainable=False)
    return model.eval()


def load_predictor(
    model_dir: Path,
    *,
    resolve_base: Callable[[str], Path | None] | None = None,
    device: torch.device | None = None,
) -> Predictor:
    """Load an artifact written by :func:`worker.artifacts.write_artifact`."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    device = select_device(device)
    images = manifest["task"] in IMAGE_TASKS
    tokenizer = load_processor(model_dir, images=images)
    model: nn.Module
    if manifest["kind"] == "full":
        auto: Any = (
            AutoModelForImageClassification if images else AutoModelForSequenceClassification
        )
        full = auto.from_pretrained(model_dir, use_safetensors=True, dtype=torch.float32)
        config, model = full.config, full
    elif manifest["kind"] == "lora":
        model = load_lora_model(manifest, model_dir, resolve_base)
        config = model.config
    else:
        spec = manifest["head"]
        backbone = load_encoder(encoder_dir(manifest, resolve_base, model_dir))
        hidden = getattr(backbone.config, "hidden_size", None)
        if not images and hidden != int(spec["in_features"]):
            raise ArtifactError("the base model's hidden size does not match the head")
        head = nn.Linear(int(spec["in_features"]), int(spec["out_features"]))
        head.load_state_dict(load_file(str(model_dir / spec["file"])))
        config, model = backbone.config, ProbeClassifier(backbone, head, spec["pooling"])
    model.to(device)
    return Predictor(
        model=model,
        tokenizer=tokenizer,
        task=manifest["task"],
        labels=list(manifest["labels"]),
        max_length=(
            0 if images else effective_max_length(tokenizer, int(manifest["max_length"]), config)
        ),
        device=device,
        calibration=_calibration(manifest, model_dir),
        long_text=_long_text(manifest, model_dir),
    )


def _long_text(manifest: dict[str, Any], model_dir: Path) -> LongText:
    try:
        return LongText.from_manifest(manifest)
    except (TypeError, ValueError) as error:
        raise ArtifactError(f"{model_dir}: bad long_text in the manifest: {error}") from error


def _calibration(manifest: dict[str, Any], model_dir: Path) -> Calibration:
    try:
        return Calibration.from_json(manifest.get("calibration"))
    except ValueError as error:
        raise ArtifactError(f"{model_dir}: bad calibration in the manifest: {error}") from error


def predictor_from_trained(trained: TrainedModel, *, device: torch.device) -> Predictor:
    """A predictor over a just-trained model, in memory: the same forward the artifact will
    serve (so evaluating it evaluates what is served), without writing anything."""
    model: nn.Module
    if trained.kind == "head":
        backbone = trained.backbone
        if backbone is None:
            backbone = load_encoder(trained.base_model_dir)
        assert isinstance(trained.model, nn.Linear)
        pooling: PoolingMode = trained.pooling or "mean"  # type: ignore[assignment]
        model = ProbeClassifier(backbone, trained.model, pooling)
    else:
        model = trained.model
    model.to(device)
    return Predictor(
        model=model,
        tokenizer=trained.tokenizer,
        task=trained.task,
        labels=list(trained.label_names),
        max_length=trained.max_length,
        device=device,
        long_text=trained.long_text,
    )
