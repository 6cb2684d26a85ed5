"""Served models as members of a :class:`~worker.serving.backbone.Backbone`.

- :class:`ProbeMember`: a linear head over pooled encoder states (``head`` artifacts);
- :class:`LoraMember`: a LoRA adapter in the shared encoder plus the classification model's
  own head (for BERT its pooler and classifier), run over the adapted states;
- :class:`FullMember`: a whole classification model, alone on its backbone.

A member turns the backbone's outputs for its rows into logits, encodes its inputs with its
tokenizer and length, and knows its labels, calibration and serving precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification
from transformers.modeling_outputs import BaseModelOutputWithPooling

from app.contract.tasks import IMAGE_TASKS
from worker.core.data import PAIR_TASK
from worker.core.long_text import TRUNCATE, LongText
from worker.core.pooling import PoolingMode, pool
from worker.evaluation.calibration import Calibration
from worker.serving.backbone import Backbone
from worker.serving.encoding import EncodedRows, InputRow, encode_inputs, encode_long_texts
from worker.serving.image_encoding import encode_images


@dataclass(eq=False)
class Member:
    model_id: str
    backbone: Backbone
    tokenizer: Any
    task: str
    labels: list[str]
    max_length: int
    calibration: Calibration
    dtype: torch.dtype
    nbytes: int = 0
    #: how texts beyond ``max_length`` are read (as in training)
    long_text: LongText = TRUNCATE
    #: image models: the most pixels of one image, and the longer side it is shrunk to first
    max_pixels: int = 40_000_000
    max_side: int = 256
    #: rows of this model waiting for or in a forward pass (it is not evicted while > 0)
    inflight: int = field(default=0, init=False)

    adapter_name: str | None = field(default=None, init=False)

    def encode(self, inputs: Sequence[Any]) -> Sequence[InputRow]:
        if self.task in IMAGE_TASKS:
            return encode_images(
                self.tokenizer, inputs, max_pixels=self.max_pixels, max_side=self.max_side
            )
        return encode_inputs(
            self.tokenizer, inputs, pair=self.task == PAIR_TASK, max_length=self.max_length
        )

    def encode_rows(self, inputs: Sequence[Any]) -> EncodedRows:
        """The rows of ``inputs``: :meth:`encode`, or one row per window of each text when
        the model reads long texts by ``head_tail`` or ``chunks``."""
        if self.task in IMAGE_TASKS or self.task == PAIR_TASK or self.long_text == TRUNCATE:
            return EncodedRows(self.encode(inputs))
        return encode_long_texts(
            self.tokenizer, inputs, max_length=self.max_length, long_text=self.long_text
        )

    def logits(self, outputs: Any, rows: list[int], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def unload(self) -> None:
        """Give back what this member added to its backbone (caller holds the lock)."""


#: what a probe's pooling may read of the backbone's outputs (``worker.core.pooling.pool``)
_POOLED_OUTPUTS = ("last_hidden_state", "pooler_output", "image_embeds")


def row_index(rows: list[int], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``rows`` as an index tensor on the batch's device."""
    device = next(iter(batch.values())).device
    return torch.tensor(rows, device=device)


@dataclass(eq=False)
class ProbeMember(Member):
    head: nn.Module = field(default_factory=nn.Identity)
    pooling: PoolingMode = "cls"

    def logits(self, outputs: Any, rows: list[int], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        index = row_index(rows, batch)
        states = SimpleNamespace(
            **{
                name: value.index_select(0, index) if value is not None else None
                for name in _POOLED_OUTPUTS
                for value in [getattr(outputs, name, None)]
            }
        )
        mask = batch.get("attention_mask")
        features = pool(
            states, mask.index_select(0, index) if mask is not None else None, self.pooling
        )
        # the head sees float32 features, exactly as it did in training (cached features)
        with torch.autocast(device_type=index.device.type, enabled=False):
            result: torch.Tensor = self.head(features.float())
        return result


@dataclass
class StandInOutputs(BaseModelOutputWithPooling):
    """What an encoder returns, with the cache fields a decoder's classifier reads (empty)."""

    cache: Any = None
    past_key_values: Any = None


class EncoderOutputs(nn.Module):
    """Stands in for a classification model's encoder: returns the states the shared encoder
    already computed for these rows, pooled by the model's own pooler when it has one."""

    def __init__(self, pooler: nn.Module | None) -> None:
        super().__init__()
        self.pooler = pooler
        self.current: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def forward(self, *args: Any, **kwargs: Any) -> StandInOutputs:
        assert self.current is not None, "EncoderOutputs used outside LoraMember.logits"
        hidden, shared_pooled = self.current
        pooled = self.pooler(hidden) if self.pooler is not None else shared_pooled
        return StandInOutputs(last_hidden_state=hidden, pooler_output=pooled)


def classification_head(
    config: Any, head_state: dict[str, torch.Tensor], device: torch.device
) -> tuple[nn.Module, EncoderOutputs]:
    """The classification model of ``config`` without its encoder: built on the meta device,
    its encoder replaced by :class:`EncoderOutputs`, the rest loaded from ``head_state``
    (keys as in the full model: ``classifier.weight``, ``bert.pooler.dense.weight`` ...)."""
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    prefix = model.base_model_prefix
    encoder = getattr(model, prefix)
    inner = {k[len(prefix) + 1 :]: v for k, v in head_state.items() if k.startswith(prefix + ".")}
    pooler: nn.Module | None = None
    if inner:
        if {key.split(".")[0] for key in inner} != {"pooler"}:
            raise ValueError(f"unsupported head modules inside the encoder: {sorted(inner)[:4]}")
        pooler = encoder.pooler
        pooler.load_state_dict({k[len("pooler.") :]: v for k, v in inner.items()}, assign=True)
    stand_in = EncoderOutputs(pooler)
    setattr(model, prefix, stand_in)
    rest = {k: v for k, v in head_state.items() if not k.startswith(prefix + ".")}
    result = model.load_state_dict(rest, strict=False, assign=True)
    if result.unexpected_keys:
        raise ValueError(f"unexpected head weights: {result.unexpected_keys[:4]}")
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"head weights missing from the adapter: {left[:4]}")
    return model.eval().requires_grad_(False).to(device), stand_in


@dataclass(eq=False)
class LoraMember(Member):
    head: nn.Module = field(default_factory=nn.Identity)
    stand_in: EncoderOutputs = field(default_factory=lambda: EncoderOutputs(None))

    def logits(self, outputs: Any, rows: list[int], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        index = row_index(rows, batch)
        pooler = getattr(outputs, "pooler_output", None)
        self.stand_in.current = (
            outputs.last_hidden_state.index_select(0, index),
            pooler.index_select(0, index) if pooler is not None else None,
        )
        try:
            sub = {name: tensor.index_select(0, index) for name, tensor in batch.items()}
            result: torch.Tensor = self.head(**sub).logits
        finally:
            self.stand_in.current = None
        return result

    def unload(self) -> None:
        if self.adapter_name is not None:
            self.backbone.remove_adapter(self.adapter_name)


@dataclass(eq=False)
class FullMember(Member):
    def logits(self, outputs: Any, rows: list[int], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        index = row_index(rows, batch)
        result: torch.Tensor = outputs.logits.index_select(0, index)
        return result
