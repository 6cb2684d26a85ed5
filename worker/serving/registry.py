"""The models an inference worker holds: members on shared backbones, bounded, LRU.

``get(model_id, storage_path)`` returns a loaded :class:`~worker.serving.members.Member`,
loading it on first use: the artifact's files are checked against its manifest, then

- a ``head`` artifact adds a linear head to the backbone of its encoder (the base model, or
  the ``encoder/`` inside the artifact), loading that encoder only if no member has yet;
- a ``lora`` artifact adds its adapter to that encoder (PEFT) and builds its own head;
- a ``full`` artifact loads whole, as its own backbone.

Image models (``image-classification``, ``image-multilabel``) are served the same way, their
processor in place of a tokenizer: probes (and CLIP zero-shot heads) share the image encoder of
their base; a ``full`` model is its own backbone; a ``lora`` model is its own backbone too (the
base with its adapter and head as an unmerged ``PeftModel``), since an image classifier's head
reads its encoder's outputs in a way of its own per architecture.

A shared encoder is counted once in :attr:`nbytes`; each member adds its own bytes (a head,
an adapter and its head, or a whole model). Beyond ``max_items`` members or ``max_bytes``,
the least recently used members with no rows in flight are unloaded, and a backbone with no
members left goes with its last one. Tokenizers are shared by the hash of their files.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
)

from app.contract.tasks import IMAGE_TASKS, MULTILABEL_TASKS
from worker.artifacts import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from worker.core.data import effective_max_length
from worker.core.long_text import LongText
from worker.core.models import load_encoder, load_processor, pad_token_of
from worker.evaluation.calibration import Calibration
from worker.features.identity import is_tokenizer_file
from worker.serving.backbone import Backbone, tensor_bytes
from worker.serving.members import (
    FullMember,
    LoraMember,
    Member,
    ProbeMember,
    classification_head,
)
from worker.serving.precision import member_dtype
from worker.serving.predictor import ArtifactError, encoder_dir, load_lora_model, read_manifest

log = logging.getLogger(__name__)


def _is_processor_file(name: str) -> bool:
    return name == "preprocessor_config.json"


class ModelRegistry:
    def __init__(
        self,
        *,
        artifact_dir: Callable[[str], Path],
        resolve_base: Callable[[str], Path | None],
        device: torch.device,
        desired_dtype: torch.dtype,
        min_agreement: float,
        max_items: int,
        max_bytes: int,
        max_image_pixels: int = 40_000_000,
        image_max_side: int = 256,
    ) -> None:
        self.artifact_dir = artifact_dir
        self.resolve_base = resolve_base
        self.device = device
        self.desired_dtype = desired_dtype
        self.min_agreement = min_agreement
        self.max_items = max(1, max_items)
        self.max_bytes = max_bytes
        self.image_limits = {"max_pixels": max_image_pixels, "max_side": image_max_side}
        self.members: OrderedDict[str, Member] = OrderedDict()
        self.backbones: dict[str, Backbone] = {}
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    # -- lookup ---------------------------------------------------------------------------
    def get(self, model_id: str, storage_path: str) -> Member:
        with self._lock:
            found = self.members.get(model_id)
            if found is not None:
                self.members.move_to_end(model_id)
                self.hits += 1
                return found
        with self._load_lock:  # one load at a time; hits above never wait for it
            with self._lock:
                found = self.members.get(model_id)
                if found is not None:
                    return found
            member = self._load(model_id, self.artifact_dir(storage_path))
            with self._lock:
                self.misses += 1
                self.members[model_id] = member
                member.backbone.members[model_id] = member
                self._evict(keep=model_id)
            return member

    def hold(self, member: Member, rows: int) -> None:
        """``rows`` of ``member`` are waiting or running: it stays loaded meanwhile."""
        with self._lock:
            member.inflight += rows

    def release(self, member: Member, rows: int) -> None:
        with self._lock:
            member.inflight = max(0, member.inflight - rows)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(
                backbone.nbytes + sum(m.nbytes for m in backbone.members.values())
                for backbone in self.backbones.values()
            )

    # -- eviction -------------------------------------------------------------------------
    def _evict(self, *, keep: str) -> None:
        for model_id in list(self.members):
            if len(self.members) <= self.max_items and self.nbytes <= self.max_bytes:
                return
            member = self.members[model_id]
            if model_id == keep or member.inflight > 0:
                continue
            self.unload(model_id)

    def unload(self, model_id: str) -> None:
        with self._lock:
            member = self.members.pop(model_id, None)
            if member is None:
                return
            backbone = member.backbone
            with backbone.lock:
                member.unload()
                backbone.members.pop(model_id, None)
            if not backbone.members:
                self.backbones.pop(backbone.key, None)
            self.evictions += 1
            log.info(
                "unloaded model %s (%d models, %d bytes left)",
                model_id,
                len(self.members),
                self.nbytes,
            )

    # -- loading --------------------------------------------------------------------------
    def _load(self, model_id: str, model_dir: Path) -> Member:
        if not (model_dir / "manifest.json").is_file():
            raise ArtifactError(f"model {model_id} has no artifact")
        manifest = read_manifest(model_dir)
        images = manifest["task"] in IMAGE_TASKS
        tokenizer = self._tokenizer(model_dir, manifest, images=images)
        kind = manifest["kind"]
        if kind == "full" or (kind == "lora" and images):
            return self._alone(model_id, model_dir, manifest, tokenizer, images=images)
        source = encoder_dir(manifest, self.resolve_base, model_dir)
        backbone = self._shared_backbone(model_id, manifest, source, tokenizer)
        config = AutoConfig.from_pretrained(source)
        common = self._common(model_id, manifest, backbone, tokenizer, config)
        if kind == "head":
            return self._probe(model_dir, manifest, common, config)
        return self._lora(model_id, model_dir, manifest, common, config, source)

    def _alone(
        self,
        model_id: str,
        model_dir: Path,
        manifest: dict[str, Any],
        tokenizer: Any,
        *,
        images: bool,
    ) -> FullMember:
        """A model that is its own backbone: a ``full`` one, or an image ``lora`` one."""
        module: nn.Module
        if manifest["kind"] == "lora":
            module = load_lora_model(manifest, model_dir, self.resolve_base)
        else:
            auto: Any = (
                AutoModelForImageClassification if images else AutoModelForSequenceClassification
            )
            module = auto.from_pretrained(model_dir, use_safetensors=True, dtype=torch.float32)
        backbone = Backbone(
            key=f"{manifest['kind']}:{model_id}",
            module=module,
            tokenizer=tokenizer,
            device=self.device,
            shared=False,
        )
        self.backbones[backbone.key] = backbone
        config: Any = getattr(module, "config", None)
        return FullMember(**self._common(model_id, manifest, backbone, tokenizer, config))

    def _common(
        self,
        model_id: str,
        manifest: dict[str, Any],
        backbone: Backbone,
        tokenizer: Any,
        config: Any,
    ) -> dict[str, Any]:
        try:
            calibration = Calibration.from_json(manifest.get("calibration"))
        except ValueError as error:
            raise ArtifactError(f"bad calibration in the manifest: {error}") from error
        try:
            long_text = LongText.from_manifest(manifest)
        except (TypeError, ValueError) as error:
            raise ArtifactError(f"bad long_text in the manifest: {error}") from error
        images = manifest["task"] in IMAGE_TASKS
        return {
            "model_id": model_id,
            "backbone": backbone,
            "tokenizer": tokenizer,
            "task": str(manifest["task"]),
            "labels": [str(label) for label in manifest["labels"]],
            "max_length": (
                0
                if images
                else effective_max_length(tokenizer, int(manifest["max_length"]), config)
            ),
            "calibration": calibration,
            "long_text": long_text,
            "dtype": member_dtype(self.desired_dtype, manifest, min_agreement=self.min_agreement),
            **self.image_limits,
        }

    def _shared_backbone(
        self, model_id: str, manifest: dict[str, Any], source: Path, tokenizer: Any
    ) -> Backbone:
        key = f"artifact:{model_id}" if manifest.get("backbone") else f"base:{source.resolve()}"
        found = self.backbones.get(key)
        if found is None:
            encoder = load_encoder(source)
            found = Backbone(
                key=key, module=encoder, tokenizer=tokenizer, device=self.device, shared=True
            )
            self.backbones[key] = found
        return found

    def _probe(
        self, model_dir: Path, manifest: dict[str, Any], common: dict[str, Any], config: Any
    ) -> ProbeMember:
        spec = manifest["head"]
        images = manifest["task"] in IMAGE_TASKS
        if not images and getattr(config, "hidden_size", None) != int(spec["in_features"]):
            raise ArtifactError("the base model's hidden size does not match the head")
        head = nn.Linear(int(spec["in_features"]), int(spec["out_features"]))
        head.load_state_dict(load_file(str(model_dir / spec["file"])))
        head = head.eval().requires_grad_(False).to(self.device)
        return ProbeMember(**common, head=head, pooling=spec["pooling"], nbytes=tensor_bytes(head))

    def _lora(
        self,
        model_id: str,
        model_dir: Path,
        manifest: dict[str, Any],
        common: dict[str, Any],
        config: Any,
        source: Path,
    ) -> LoraMember:
        from peft import LoraConfig

        listed = manifest.get("files", {})
        if ADAPTER_WEIGHTS not in listed or ADAPTER_CONFIG not in listed:
            raise ArtifactError(f"the adapter files of {model_id} are not in its manifest")
        labels = common["labels"]
        config.pad_token_id = pad_token_of(config)
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
        config.problem_type = (
            "multi_label_classification"
            if manifest["task"] in MULTILABEL_TASKS
            else "single_label_classification"
        )
        saved = load_file(str(model_dir / ADAPTER_WEIGHTS))
        names = {key.removeprefix("base_model.model."): value for key, value in saved.items()}
        head_state = {name: value for name, value in names.items() if ".lora_" not in name}
        try:
            head, stand_in = classification_head(config, head_state, self.device)
        except ValueError as error:
            raise ArtifactError(f"{model_id}: {error}") from error
        encoder_prefix = str(head.base_model_prefix)
        adapter_state = {}
        for name, value in names.items():
            if ".lora_" not in name:
                continue
            if not name.startswith(encoder_prefix + "."):
                raise ArtifactError(f"{model_id}: adapter weight outside the encoder: {name}")
            adapter_state["base_model.model." + name[len(encoder_prefix) + 1 :]] = value
        adapter_config = LoraConfig.from_pretrained(str(model_dir))
        adapter_config.modules_to_save = None  # heads are per model, outside the encoder
        adapter_config.task_type = None
        adapter_config.inference_mode = True
        backbone: Backbone = common["backbone"]
        with backbone.lock:
            try:
                adapter_bytes = backbone.add_adapter(model_id, adapter_config, adapter_state)
            except ValueError as error:
                raise ArtifactError(f"{model_id}: {error}") from error
        member = LoraMember(
            **common, head=head, stand_in=stand_in, nbytes=adapter_bytes + tensor_bytes(head)
        )
        member.adapter_name = model_id
        return member

    def _tokenizer(self, model_dir: Path, manifest: dict[str, Any], *, images: bool) -> Any:
        """The artifact's tokenizer (or, for an image model, its image processor), shared
        between artifacts whose files are the same."""
        files = manifest.get("files", {})
        defines = _is_processor_file if images else is_tokenizer_file
        listed = sorted((name, sha) for name, sha in files.items() if defines(name))
        if not listed:  # nothing to tell it by: its own
            listed = [(str(model_dir.resolve()), "")]
        key = hashlib.sha256(repr((images, listed)).encode()).hexdigest()
        found = self._tokenizers.get(key)
        if found is None:
            found = load_processor(model_dir, images=images)
            self._tokenizers[key] = found
        return found
