"""``lora``: PEFT LoRA adapters on the attention projections plus a trained head; base frozen.

Contract:

- The base (``AutoModelForSequenceClassification`` over ``setup.base_model_dir``) is wrapped by
  ``peft.get_peft_model`` with ``LoraConfig(task_type=SEQ_CLS, r, lora_alpha, lora_dropout,
  target_modules)``. Every base weight keeps ``requires_grad=False`` and stays bit-identical.
- ``target_modules`` null picks a default per ``model_type`` (:data:`DEFAULT_TARGET_MODULES`:
  the query and value projections); an unknown ``model_type`` raises ``ValueError`` asking for
  ``target_modules``.
- The head trains in full through ``modules_to_save`` (:func:`head_modules`): every top-level
  module of the classification model outside the encoder (``classifier``, ``pre_classifier``,
  deberta's ``pooler``) plus the encoder's ``pooler`` when it has one. peft trains copies of
  them; the originals stay untouched.
- AdamW over the trainable parameters only, warmup then linear decay. The ``lora`` result's
  ``model`` is the unmerged ``PeftModel``; the artifact holds only the adapter and the head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from torch import nn

from app.contract.strategies import LoraStrategy
from worker.core.models import load_classifier, reads_images_dir
from worker.strategies.toolkit import adamw, fine_tune_classifier, parameter_counts
from worker.training.recipe import Strategy, TrainedModel, TrainingSetup

#: the attention projections LoRA adapts by default, by ``config.model_type``
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "albert": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta-v2": ["query_proj", "value_proj"],
    "mpnet": ["q", "v"],
    "gpt2": ["c_attn"],  # GPT-2's fused query-key-value projection (a Conv1D)
    # image models: attention projections (the names differ across transformers versions),
    # or a CNN's pointwise layers (PEFT adapts Linear and ungrouped Conv2d layers)
    "vit": ["q_proj", "v_proj", "query", "value"],
    "clip": ["q_proj", "v_proj"],
    "convnext": ["pwconv1", "pwconv2"],
    "resnet": ["convolution"],
    "mobilenet_v2": ["expand_1x1.convolution", "reduce_1x1.convolution"],
}
#: architectures whose adapted layers store their weight transposed (``transformers``' Conv1D)
FAN_IN_FAN_OUT = frozenset({"gpt2"})


def default_target_modules(model_type: str) -> list[str]:
    """The default LoRA targets of an architecture; ``ValueError`` for an unknown one."""
    try:
        return list(DEFAULT_TARGET_MODULES[model_type])
    except KeyError:
        raise ValueError(
            f"lora has no default target modules for model_type {model_type!r} (known: "
            f"{', '.join(sorted(DEFAULT_TARGET_MODULES))}); set strategy.target_modules to the "
            "names of its attention projection layers"
        ) from None


def present_targets(model: nn.Module, targets: list[str]) -> list[str]:
    """The ``targets`` some module of ``model`` is named by (its name ends with the target)."""
    names = [name for name, _ in model.named_modules()]
    return [t for t in targets if any(n == t or n.endswith(f".{t}") for n in names)]


def head_modules(model: nn.Module) -> list[str]:
    """Full names of the head's modules: trained in full (``modules_to_save``), not adapted.
    The encoder is the ``base_model_prefix`` child, else the child with the most weights
    (CLIP's classifier keeps its ``vision_model``)."""
    children = dict(model.named_children())
    encoder_name = getattr(model, "base_model_prefix", "")
    if encoder_name not in children:
        encoder_name = max(children, key=lambda n: sum(p.numel() for p in children[n].parameters()))
    names = [
        name
        for name, child in model.named_children()
        if name != encoder_name and any(True for _ in child.parameters())
    ]
    encoder = getattr(model, encoder_name, None)
    pooler = getattr(encoder, "pooler", None)
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        names.append(f"{encoder_name}.pooler")
    return names


def build_lora_model(
    base_model_dir: Path, config: LoraStrategy, *, label_names: list[str], multilabel: bool
) -> PeftModel:
    """The base classification model wrapped with fresh LoRA adapters and a trainable head."""
    model = load_classifier(base_model_dir, label_names=label_names, multilabel=multilabel)
    model_type = str(getattr(model.config, "model_type", ""))
    images = reads_images_dir(base_model_dir)
    targets = config.target_modules or present_targets(model, default_target_modules(model_type))
    lora_config = LoraConfig(
        # image classifiers take pixel_values: peft's generic model passes inputs through
        task_type=None if images else TaskType.SEQ_CLS,
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(targets),
        modules_to_save=head_modules(model),
        bias="none",
        fan_in_fan_out=model_type in FAN_IN_FAN_OUT,
    )
    peft_model = get_peft_model(model, lora_config)
    assert isinstance(peft_model, PeftModel)
    return peft_model


class LoraFineTune(Strategy, name="lora", artifact_kind="lora"):
    def train(self, setup: TrainingSetup, config: LoraStrategy) -> TrainedModel:
        model = build_lora_model(
            setup.base_model_dir,
            config,
            label_names=setup.label_names,
            multilabel=setup.multilabel,
        ).to(setup.device)
        trainable, total = parameter_counts(model)
        lora_config: Any = model.peft_config["default"]
        setup.callbacks.on_event(
            "lora_ready",
            f"LoRA r={config.r} on {sorted(lora_config.target_modules or [])}: "
            f"{trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f}%)",
            {
                "trainable_parameters": trainable,
                "total_parameters": total,
                "trainable_fraction": trainable / total,
                "target_modules": sorted(lora_config.target_modules or []),
                "modules_to_save": sorted(lora_config.modules_to_save or []),
            },
        )
        optimizer = adamw(model, setup, lr=setup.hp.effective_learning_rate(config))
        return fine_tune_classifier(setup, model, optimizer, strategy=self.name, kind="lora")
