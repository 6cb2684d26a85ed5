"""Texts longer than the model's window: ``truncate``, ``head_tail`` or ``chunks``.

One function, :func:`encode_windows`, turns texts into token windows for training, feature
extraction and serving alike, so that a model is served exactly the way it was trained:

- ``truncate``: the first ``max_length`` tokens (the tokenizer's own truncation);
- ``head_tail``: the first quarter and the last three quarters of the window's tokens, joined
  (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification": head 128 + tail 382 of
  512 beat the head alone on long reviews and news);
- ``chunks``: consecutive windows of ``max_length`` tokens, at most ``max_chunks`` of them;
  the model runs on each window and the windows' outputs are averaged per text
  (:func:`pool_windows`: logits for classifiers, pooled states for encoders; for a linear head
  the two are the same).

The cut points come from the fast tokenizer's offsets (tokens without special tokens); each
window's text is then tokenized the ordinary way, so special tokens, type ids and masks are
the tokenizer's own. Work per text is bounded before tokenizing: only the characters that can
hold the kept tokens are read (``CHARS_PER_TOKEN`` per token, as in serving). Text pairs are
always truncated (a pair has no single head or tail).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from worker.core.pooling import PoolingMode, pool

LongTextMode = Literal["truncate", "head_tail", "chunks"]
#: characters per kept token read before tokenizing (English averages about 4.5 for BERT)
CHARS_PER_TOKEN = 12
#: the key a batch of chunked texts carries: the number of windows of each text, in order
WINDOWS = "text_windows"


@dataclass(frozen=True)
class LongText:
    """How texts beyond ``max_length`` tokens are read (the job's ``long_text`` settings)."""

    mode: LongTextMode = "truncate"
    max_chunks: int = 4

    @classmethod
    def of(cls, hp: Any) -> LongText:
        """From a job's hyperparameters (or anything with ``long_text`` and ``max_chunks``)."""
        return cls(hp.long_text, int(hp.max_chunks))

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> LongText:
        """From an artifact's manifest; artifacts written before the setting truncate."""
        mode = manifest.get("long_text", "truncate")
        if mode not in ("truncate", "head_tail", "chunks"):
            raise ValueError(f"unknown long_text {mode!r}")
        return cls(mode, int(manifest.get("max_chunks", 4)))

    def manifest(self) -> dict[str, Any]:
        return {"long_text": self.mode, "max_chunks": self.max_chunks}

    def identity(self) -> dict[str, Any]:
        """What features computed this way depend on (nothing for ``truncate``: the feature
        cache's namespaces from before the setting stay valid)."""
        if self.mode == "truncate":
            return {}
        chunks = {"max_chunks": self.max_chunks} if self.mode == "chunks" else {}
        return {"long_text": self.mode, **chunks}


TRUNCATE = LongText()


@dataclass
class Windows:
    """Token windows of several texts: ``encodings`` holds every window (in text order) as the
    tokenizer returns them, unpadded; ``counts[i]`` is the number of windows of text ``i``."""

    encodings: dict[str, list[list[int]]]
    counts: list[int]

    def window(self, index: int) -> dict[str, list[int]]:
        return {key: values[index] for key, values in self.encodings.items()}


def encode_windows(
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    *,
    max_length: int,
    long_text: LongText = TRUNCATE,
    **options: Any,
) -> Windows:
    """The windows of ``texts`` (one each, except ``chunks``); ``options`` go to the final
    tokenizer call (e.g. ``return_special_tokens_mask=True``)."""
    if long_text.mode == "truncate" or pairs is not None:
        seconds = list(pairs) if pairs is not None else None
        encoded = tokenizer(list(texts), seconds, truncation=True, max_length=max_length, **options)
        return Windows(dict(encoded), [1] * len(texts))
    budget = max(1, max_length - tokenizer.num_special_tokens_to_add(pair=False))
    pieces = _cut(tokenizer, list(texts), budget, long_text)
    flat = [piece for text_pieces in pieces for piece in text_pieces]
    encoded = tokenizer(flat, truncation=True, max_length=max_length, **options)
    return Windows(dict(encoded), [len(text_pieces) for text_pieces in pieces])


def _cut(tokenizer: Any, texts: list[str], budget: int, long_text: LongText) -> list[list[str]]:
    """Each text as the texts of its windows (cut at token boundaries)."""
    chunks = long_text.mode == "chunks"
    keep = budget * (long_text.max_chunks if chunks else 1)
    limit = max(64, keep * CHARS_PER_TOKEN)
    read = [_bounded(text, limit, tail=not chunks) for text in texts]
    offsets = tokenizer(
        read,
        add_special_tokens=False,
        truncation=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )["offset_mapping"]
    out: list[list[str]] = []
    for text, spans in zip(read, offsets, strict=True):
        n = len(spans)
        if n <= budget:
            out.append([text])
        elif chunks:
            starts = range(0, min(n, keep), budget)
            out.append([text[spans[s][0] : spans[min(s + budget, n) - 1][1]] for s in starts])
        else:
            head = budget // 4
            head_text = text[: spans[head - 1][1]] if head > 0 else ""
            tail_text = text[spans[n - (budget - head)][0] :]
            out.append([f"{head_text} {tail_text}" if head_text else tail_text])
    return out


def _bounded(text: str, limit: int, *, tail: bool) -> str:
    """At most about ``limit`` characters of ``text``, cut at whitespace: its beginning, or
    (``tail``) its beginning and its end joined by a space."""
    if len(text) <= (2 * limit if tail else limit):
        return text
    head = text[:limit]
    cut = head.rfind(" ", limit // 2)
    head = head[:cut] if cut > 0 else head
    if not tail:
        return head
    end = text[-limit:]
    cut = end.find(" ", 0, limit // 2)
    return f"{head} {end[cut + 1 :] if cut >= 0 else end}"


def pool_windows(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The mean of each text's consecutive rows of ``values`` (``[windows, ...]`` to
    ``[texts, ...]``), ``counts[i]`` rows for text ``i``."""
    counts = counts.to(values.device)
    owners = torch.repeat_interleave(torch.arange(len(counts), device=values.device), counts)
    sums = torch.zeros((len(counts), *values.shape[1:]), dtype=values.dtype, device=values.device)
    sums = sums.index_add(0, owners, values)
    return sums / counts.to(values.dtype).view(-1, *([1] * (values.dim() - 1)))


def split_windows(
    inputs: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """A batch's model inputs without :data:`WINDOWS`, and the window counts (None: one
    window per text)."""
    if WINDOWS not in inputs:
        return inputs, None
    rest = {key: value for key, value in inputs.items() if key != WINDOWS}
    return rest, inputs[WINDOWS]


def pooled_states(
    encoder: Any, inputs: dict[str, torch.Tensor], pooling: PoolingMode
) -> torch.Tensor:
    """An encoder's pooled states of each text of a batch (windows averaged per text)."""
    model_inputs, counts = split_windows(inputs)
    states = pool(encoder(**model_inputs), model_inputs.get("attention_mask"), pooling)
    return states if counts is None else pool_windows(states, counts)
