"""A loaded network that several served models run their rows through in one forward pass.

A :class:`Backbone` is either a shared encoder (``AutoModel``: a base model, or an encoder
that ships inside one artifact) or a whole classification model (``full`` artifacts, one
member). Its members are the served models on it: linear heads over pooled states, LoRA
adapters (added to the shared encoder with PEFT, one adapter per model, selected per row with
``adapter_names``; ``__base__`` rows run the plain encoder) or the full model itself.

:meth:`Backbone.run` pads a batch of rows (any mix of its members), runs the network once
under the batch's precision, and hands each member its rows' states. Mutations (adding or
removing an adapter) and forwards both hold :attr:`Backbone.lock`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from worker.core.device import autocast_as
from worker.serving.encoding import InputRow, batch_rows

BASE_ADAPTER = "__base__"


class Member(Protocol):
    """What a backbone needs of a served model on it (``worker.serving.members.Member``
    implements it; declared here so that this module does not import that one)."""

    model_id: str
    adapter_name: str | None
    nbytes: int

    def logits(
        self, outputs: Any, rows: list[int], batch: dict[str, torch.Tensor]
    ) -> torch.Tensor: ...


def tensor_bytes(module: nn.Module, *, containing: str | None = None) -> int:
    """Bytes of the module's parameters and buffers (only names containing ``containing``)."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return sum(
        t.numel() * t.element_size()
        for name, t in named
        if containing is None or containing in name.split(".")
    )


class Backbone:
    def __init__(
        self,
        *,
        key: str,
        module: nn.Module,
        tokenizer: Any,
        device: torch.device,
        shared: bool,
    ) -> None:
        self.key = key
        self.module = module.eval().requires_grad_(False).to(device)
        self.tokenizer = tokenizer
        self.device = device
        #: True for an encoder that heads and adapters share; False for a full model
        self.shared = shared
        self.peft: Any = None
        self.members: dict[str, Member] = {}
        self.lock = threading.Lock()
        self.nbytes = tensor_bytes(self.module)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0
        self.left_pad = getattr(tokenizer, "padding_side", "right") == "left"
        self.forwards = 0

    # -- adapters -------------------------------------------------------------------------
    def add_adapter(self, name: str, config: Any, state: dict[str, torch.Tensor]) -> int:
        """Add a LoRA adapter (PEFT) to the shared encoder; returns its bytes. The caller
        holds :attr:`lock`."""
        from peft import get_peft_model, set_peft_model_state_dict

        if self.peft is None:
            self.peft = get_peft_model(self.module, config, adapter_name=name)
        else:
            self.peft.add_adapter(name, config)
        result: Any = set_peft_model_state_dict(self.peft, state, adapter_name=name)
        missing = [key for key in result.missing_keys if f".{name}." in key]
        if result.unexpected_keys or missing:
            self.peft.delete_adapter(name)
            raise ValueError(
                f"adapter weights do not fit the encoder (unexpected {result.unexpected_keys[:3]}, "
                f"missing {missing[:3]})"
            )
        self.peft.eval().requires_grad_(False).to(self.device)
        return tensor_bytes(self.peft, containing=name)

    def remove_adapter(self, name: str) -> None:
        """Remove an adapter; the last one removed unwraps the encoder. Caller holds lock."""
        if self.peft is None or name not in self.peft.peft_config:
            return
        if len(self.peft.peft_config) == 1:
            self.module = self.peft.unload()
            self.peft = None
        else:
            self.peft.delete_adapter(name)

    # -- forward --------------------------------------------------------------------------
    def run(
        self, rows: Sequence[InputRow], members: Sequence[Member], dtype: torch.dtype
    ) -> list[torch.Tensor]:
        """Logits of each row (float32, CPU) for its member, from one forward pass."""
        batch = batch_rows(rows, pad_id=self.pad_id, left=self.left_pad, device=self.device)
        by_member: dict[str, list[int]] = {}
        for index, member in enumerate(members):
            by_member.setdefault(member.model_id, []).append(index)
        found = {member.model_id: member for member in members}
        out: list[torch.Tensor | None] = [None] * len(rows)
        with torch.inference_mode(), autocast_as(self.device, dtype):
            kwargs: dict[str, Any] = {}
            network: nn.Module = self.module
            if self.peft is not None:
                network = self.peft
                kwargs["adapter_names"] = [m.adapter_name or BASE_ADAPTER for m in members]
            outputs = network(**batch, **kwargs)
            self.forwards += 1
            for model_id, indices in by_member.items():
                logits = found[model_id].logits(outputs, indices, batch).float().cpu()
                for position, index in enumerate(indices):
                    out[index] = logits[position]
        return [tensor for tensor in out if tensor is not None]
