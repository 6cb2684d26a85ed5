"""Which base models are decoders (GPT-style): read from ``config.json``, no torch.

A decoder has no [CLS] token and reads left to right, so its last real token is the one that
has seen the whole text: probes pool it (``last``), and a classifier needs a pad token (the
worker sets it from the end-of-text token when the tokenizer has none).
"""

from __future__ import annotations

from typing import Any

#: ``model_type`` values of decoder-only language models
DECODER_MODEL_TYPES = frozenset(
    {"gpt2", "gpt_neo", "gpt_neox", "gptj", "opt", "bloom", "llama", "mistral", "qwen2", "phi"}
)


def is_decoder_config(config: dict[str, Any]) -> bool:
    """True for a decoder-only language model's ``config.json``."""
    if config.get("model_type") in DECODER_MODEL_TYPES:
        return True
    architectures = config.get("architectures") or []
    return any(str(a).endswith(("LMHeadModel", "ForCausalLM")) for a in architectures)
