"""Token counts for the audit's ``long_texts`` check: a sample of texts counted with the base
model's ``tokenizer.json`` (the Rust tokenizer: light, no torch), or estimated from word
counts without one; and the model's own token limit."""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

from app.base_models.registry import BaseModelInfo

logger = logging.getLogger(__name__)

#: without the model's tokenizer.json, tokens ~ this x whitespace words (+ specials)
TOKENS_PER_WORD = 1.3
#: bounds on the counting work: each sampled text is cut to this many characters per token the
#: model can take, and the sample to TOKEN_CHAR_BUDGET characters in all
CHARS_PER_TOKEN_CAP = 16
TOKEN_CHAR_BUDGET = 2_000_000
#: a tokenizer's model_max_length at or above this means "no limit" (transformers uses 1e30)
NO_LIMIT = 1_000_000

TextPair = tuple[str, str | None]


def model_max_length(base: BaseModelInfo) -> int | None:
    """The model's own token limit: max_position_embeddings, or the tokenizer's
    model_max_length when that is smaller and a real limit."""
    limits = [base.max_length] if isinstance(base.max_length, int) and base.max_length > 0 else []
    try:
        value = json.loads((base.path / "tokenizer_config.json").read_text())["model_max_length"]
    except (OSError, ValueError, KeyError, TypeError):
        value = None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < NO_LIMIT:
        limits.append(value)
    return min(limits) if limits else None


def within_budget(sample: dict[int, TextPair]) -> list[TextPair]:
    """The sample in its random order, up to TOKEN_CHAR_BUDGET characters."""
    kept: list[TextPair] = []
    chars = 0
    for _, (text, other) in sorted(sample.items()):
        chars += len(text) + len(other or "")
        if chars > TOKEN_CHAR_BUDGET and kept:
            break
        kept.append((text, other))
    return kept


@functools.lru_cache(maxsize=4)
def _tokenizer(path: Path, mtime_ns: int) -> Any:
    from tokenizers import Tokenizer  # the Rust tokenizer: light, no torch

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def count_tokens(texts: list[TextPair], tokenizer_file: Path | None) -> tuple[list[int], str]:
    """Tokens per text (with special tokens) by the model's tokenizer, or else estimated;
    and how they were counted: ``"tokenizer"`` or ``"estimate"``."""
    if tokenizer_file is not None and texts:
        try:
            tokenizer = _tokenizer(tokenizer_file, tokenizer_file.stat().st_mtime_ns)
            inputs = [text if other is None else (text, other) for text, other in texts]
            return [len(e.ids) for e in tokenizer.encode_batch(inputs)], "tokenizer"
        except Exception:
            logger.exception("audit: cannot count tokens with %s; estimating", tokenizer_file)
    return [
        math.ceil(TOKENS_PER_WORD * (len(text.split()) + len((other or "").split())))
        + (2 if other is None else 3)
        for text, other in texts
    ], "estimate"
