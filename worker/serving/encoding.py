"""Predict inputs to rows (token ids, bounded work per input; or an image's pixels) and rows
to a batch (:func:`batch_rows`: ids padded, pixels stacked).

A fast tokenizer reads the whole string even when it keeps only ``max_length`` tokens, so a
100,000-character input would cost ~100 ms of tokenizing to keep 256 tokens. Each text is
first cut at a whitespace boundary after ``max_length * CHARS_PER_TOKEN`` characters; only if
that prefix yields fewer tokens than the model keeps (text with unusually long tokens or long
runs of spaces) is the text tokenized again from a four times longer prefix, up to the whole
text. Cutting at whitespace keeps the tokens before the cut as they are, so the ids equal
those of the whole text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from worker.core.long_text import CHARS_PER_TOKEN, LongText, encode_windows


@dataclass(frozen=True)
class Encoded:
    """One input as token ids (no padding), ready to be batched with others."""

    ids: list[int]
    type_ids: list[int] | None

    def __len__(self) -> int:
        return len(self.ids)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", limit // 2, limit)
    return text[: cut if cut > 0 else limit]


def _tokenize(tokenizer: Any, firsts: list[str], seconds: list[str] | None, max_length: int) -> Any:
    return tokenizer(
        firsts,
        seconds,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
    )


def encode_inputs(
    tokenizer: Any, inputs: Sequence[Any], *, pair: bool, max_length: int
) -> list[Encoded]:
    """Token ids of each input, truncated to ``max_length`` like the tokenizer would."""
    if pair:
        firsts = [str(item[0]) for item in inputs]
        seconds: list[str] | None = [str(item[1]) for item in inputs]
    else:
        firsts, seconds = [str(item) for item in inputs], None
    limit = max(64, max_length * CHARS_PER_TOKEN)
    encoded: list[Encoded | None] = [None] * len(firsts)
    todo = list(range(len(firsts)))
    while todo:
        clipped_a = [_clip(firsts[i], limit) for i in todo]
        clipped_b = [_clip(seconds[i], limit) for i in todo] if seconds is not None else None
        batch = _tokenize(tokenizer, clipped_a, clipped_b, max_length)
        type_ids = batch.get("token_type_ids")
        retry: list[int] = []
        for position, index in enumerate(todo):
            ids = list(batch["input_ids"][position])
            was_cut = len(clipped_a[position]) < len(firsts[index]) or (
                clipped_b is not None
                and seconds is not None
                and len(clipped_b[position]) < len(seconds[index])
            )
            if was_cut and len(ids) < max_length:
                retry.append(index)  # the prefix ran out before max_length tokens: read more
                continue
            types = list(type_ids[position]) if type_ids is not None else None
            encoded[index] = Encoded(ids, types)
        todo = retry
        limit *= 4
    return [item for item in encoded if item is not None]


def encode_long_texts(
    tokenizer: Any, inputs: Sequence[Any], *, max_length: int, long_text: LongText
) -> EncodedRows:
    """Texts read as ``long_text`` says (:func:`worker.core.long_text.encode_windows`, the
    function training read them with): one row per window."""
    windows = encode_windows(
        tokenizer,
        [str(item) for item in inputs],
        max_length=max_length,
        long_text=long_text,
        return_attention_mask=False,
    )
    types = windows.encodings.get("token_type_ids")
    rows: list[InputRow] = [
        Encoded(list(ids), list(types[i]) if types is not None else None)
        for i, ids in enumerate(windows.encodings["input_ids"])
    ]
    return EncodedRows(rows, windows.counts)


@dataclass(frozen=True, eq=False)
class ImageRow:
    """One image as the processor made it (``[channels, height, width]``). Its length, what the
    scheduler counts and buckets by, is its number of 16 x 16 patches: an image costs about
    what a text of as many tokens does."""

    pixels: torch.Tensor

    def __len__(self) -> int:
        return max(1, int(self.pixels.shape[-1] * self.pixels.shape[-2]) // 256)


InputRow = Encoded | ImageRow


@dataclass
class EncodedRows:
    """The rows of several inputs: one each, or (``long_text: chunks``) ``counts[i]``
    consecutive rows for input ``i``, whose logits are averaged into its answer."""

    rows: Sequence[InputRow]
    counts: list[int] | None = None

    def split(self, sizes: Sequence[int]) -> list[EncodedRows]:
        """Consecutive groups of ``sizes[j]`` inputs each (one group per request)."""
        out: list[EncodedRows] = []
        row = position = 0
        for size in sizes:
            if self.counts is None:
                out.append(EncodedRows(self.rows[row : row + size]))
                row += size
                continue
            counts = self.counts[position : position + size]
            out.append(EncodedRows(self.rows[row : row + sum(counts)], counts))
            row, position = row + sum(counts), position + size
        return out


def batch_rows(
    rows: Sequence[InputRow], *, pad_id: int, left: bool, device: torch.device
) -> dict[str, torch.Tensor]:
    """The model inputs of ``rows``: ``pixel_values`` for images, else :func:`pad_batch`."""
    if isinstance(rows[0], ImageRow):
        pixels = torch.stack([row.pixels for row in rows if isinstance(row, ImageRow)])
        if len(pixels) != len(rows):
            raise ValueError("a batch mixes images and texts")
        return {"pixel_values": pixels.to(device, non_blocking=True)}
    texts = [row for row in rows if isinstance(row, Encoded)]
    if len(texts) != len(rows):
        raise ValueError("a batch mixes images and texts")
    return pad_batch(texts, pad_id=pad_id, left=left, device=device)


def pad_batch(
    rows: Sequence[Encoded], *, pad_id: int, left: bool, device: torch.device
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the rows have them),
    padded to the longest row, on ``device``."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    with_types = rows[0].type_ids is not None
    types = torch.zeros((len(rows), width), dtype=torch.long) if with_types else None
    for i, row in enumerate(rows):
        n = len(row)
        span = slice(width - n, width) if left else slice(0, n)
        ids[i, span] = torch.tensor(row.ids, dtype=torch.long)
        mask[i, span] = 1
        if types is not None and row.type_ids is not None:
            types[i, span] = torch.tensor(row.type_ids, dtype=torch.long)
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
