"""Pooled features of examples through a frozen encoder, from the feature cache when it can.

:class:`Featurizer` looks every example up by its key in the cache's namespace for this
encoder (:class:`worker.features.identity.FeatureSpace`), runs the encoder only over the
examples it misses (each split on its own, in order, with the same batches as without a
cache), writes those as one new shard, and returns one ``[n, hidden]`` float32 tensor per
split. The encoder is loaded lazily: when everything is a hit it is never loaded. Any failure
of the cache (unreadable directory, full disk) only costs a miss; the features are computed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worker.core.data import Examples, TokenizedExamples, make_loader, move_batch
from worker.core.device import autocast
from worker.core.images import decode, pixel_inputs
from worker.core.long_text import TRUNCATE, LongText, encode_windows, pooled_states
from worker.core.models import load_encoder
from worker.core.pooling import PoolingMode, pool
from worker.features.identity import (
    FeatureSpace,
    autocast_dtype,
    directory_weights_identity,
    keys_of,
    module_weights_identity,
    tokenizer_identity,
)
from worker.features.store import FeatureCache, Found

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


def _shifted(report: Progress, offset: int) -> Progress:
    return lambda done: report(offset + done)


def extract_features(
    backbone: nn.Module,
    data: TokenizedExamples,
    tokenizer: Any,
    *,
    pooling: PoolingMode,
    batch_size: int,
    device: torch.device,
    progress: Progress | None = None,
) -> torch.Tensor:
    """One pass of the backbone over ``data``: ``[len(data), hidden]`` float32 on ``device``.

    ``progress(done)`` is called after each batch with the number of examples done so far.
    """
    chunks: list[torch.Tensor] = []
    done = 0
    with torch.inference_mode(), autocast(device):
        for inputs, labels in make_loader(data, tokenizer, batch_size=batch_size):
            chunks.append(pooled_states(backbone, move_batch(inputs, device), pooling).float())
            done += len(labels)
            if progress is not None:
                progress(done)
    # concatenated outside inference mode: a normal tensor autograd may save for backward
    return torch.cat(chunks)


def extract_image_features(
    backbone: nn.Module,
    images: list[bytes],
    processor: Any,
    *,
    pooling: PoolingMode,
    batch_size: int,
    device: torch.device,
    progress: Progress | None = None,
) -> torch.Tensor:
    """One pass of an image backbone over stored images: ``[len(images), hidden]`` float32."""
    chunks: list[torch.Tensor] = []
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(images), batch_size):
            batch = [decode(image) for image in images[start : start + batch_size]]
            inputs = move_batch(pixel_inputs(processor, batch), device)
            chunks.append(pool(backbone(**inputs), None, pooling).float())
            if progress is not None:
                progress(start + len(batch))
    return torch.cat(chunks)


def load_frozen_encoder(base_model_dir: Path, device: torch.device) -> nn.Module:
    """The base's encoder (fp32, safetensors only; CLIP's vision tower), frozen, in eval mode."""
    encoder: nn.Module = load_encoder(base_model_dir)
    encoder.to(device).eval().requires_grad_(False)
    return encoder


class Featurizer:
    """Features of examples for one encoder, tokenizer, pooling and truncation length."""

    def __init__(
        self,
        *,
        load_encoder: Callable[[], nn.Module],
        encoder_identity: Callable[[], str | None],
        tokenizer_dir: Path,
        tokenizer: Any,
        pooling: PoolingMode,
        max_length: int,
        batch_size: int,
        device: torch.device,
        cache: FeatureCache | None,
        long_text: LongText = TRUNCATE,
    ) -> None:
        self._load_encoder = load_encoder
        self._encoder_identity = encoder_identity
        self._encoder: nn.Module | None = None
        self._space: FeatureSpace | None = None
        self.tokenizer_dir = Path(tokenizer_dir)
        self.tokenizer, self.pooling, self.max_length = tokenizer, pooling, max_length
        self.long_text = long_text
        self.batch_size, self.device, self.cache = batch_size, device, cache
        #: examples served from the cache / computed by the encoder, over every call
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_base(cls, base_model_dir: Path, **kwargs: Any) -> Featurizer:
        """Over the base's encoder as saved in ``base_model_dir`` (loaded only on a miss)."""
        base = Path(base_model_dir)
        return cls(
            load_encoder=lambda: load_frozen_encoder(base, kwargs["device"]),
            encoder_identity=lambda: directory_weights_identity(base),
            tokenizer_dir=base,
            **kwargs,
        )

    @classmethod
    def for_encoder(cls, encoder: nn.Module, *, tokenizer_dir: Path, **kwargs: Any) -> Featurizer:
        """Over an in-memory encoder (e.g. one tuned by ``contrastive``), identified by the
        bytes of its weights; the tokenizer is the one of ``tokenizer_dir``."""
        return cls(
            load_encoder=lambda: encoder,
            encoder_identity=lambda: module_weights_identity(encoder),
            tokenizer_dir=tokenizer_dir,
            **kwargs,
        )

    @property
    def encoder_loaded(self) -> bool:
        return self._encoder is not None

    def encoder(self) -> nn.Module:
        if self._encoder is None:
            self._encoder = self._load_encoder()
        return self._encoder

    def space(self) -> FeatureSpace | None:
        """This featurizer's namespace parts; None when the cache is off or unidentifiable."""
        if self.cache is None:
            return None
        if self._space is None:
            try:
                encoder = self._encoder_identity()
                tokenizer = tokenizer_identity(self.tokenizer_dir, self.tokenizer)
            except Exception as error:  # an unreadable file: compute, as without a cache
                log.warning("feature cache: cannot identify the encoder: %s", error)
                encoder = tokenizer = None
            if encoder is None or tokenizer is None:
                log.info("feature cache: encoder or tokenizer has no identity; not cached")
                self.cache = None
                return None
            self._space = FeatureSpace(
                encoder=encoder,
                tokenizer=tokenizer,
                pooling=self.pooling,
                max_length=self.max_length,
                long_text=self.long_text,
                device=self.device.type,
                dtype=autocast_dtype(self.device),
            )
        return self._space

    def _compute(self, examples: Examples, rows: list[int], progress: Progress) -> torch.Tensor:
        if examples.images is not None:
            return extract_image_features(
                self.encoder(),
                [examples.images[row] for row in rows],
                self.tokenizer,
                pooling=self.pooling,
                batch_size=self.batch_size,
                device=self.device,
                progress=progress,
            )
        texts = [examples.texts[row] for row in rows]
        pairs = examples.text_pairs
        windows = encode_windows(
            self.tokenizer,
            texts,
            [pairs[row] for row in rows] if pairs is not None else None,
            max_length=self.max_length,
            long_text=self.long_text,
        )
        data = TokenizedExamples(windows.encodings, torch.zeros(len(rows)), windows.counts)
        return extract_features(
            self.encoder(),
            data,
            self.tokenizer,
            pooling=self.pooling,
            batch_size=self.batch_size,
            device=self.device,
            progress=progress,
        )

    def features(self, *splits: Examples, progress: Progress | None = None) -> list[torch.Tensor]:
        """One ``[len(split), hidden]`` float32 tensor on the device per split.
        ``progress(done)`` counts examples over all splits; cache hits count at once.

        The global RNG advances by exactly one draw per split, whatever was computed or found:
        the work runs under a forked RNG, then one draw stands in for the one each split's
        DataLoader takes (its base seed) in an uncached pass. So what the job draws next (a
        head's initial weights) is the same with or without cache hits, and as before the
        cache existed."""
        with torch.random.fork_rng(devices=[]):
            out = self._features(splits, progress or (lambda done: None))
        for _ in splits:
            torch.empty((), dtype=torch.int64).random_()
        return out

    def _features(self, splits: tuple[Examples, ...], report: Progress) -> list[torch.Tensor]:
        space = self.space()
        if space is None or self.cache is None:
            out, offset = [], 0
            for split in splits:
                rows = list(range(len(split)))
                out.append(self._compute(split, rows, _shifted(report, offset)))
                offset += len(split)
            self.misses += offset
            return out
        return self._cached(self.cache, space, splits, report)

    def _cached(
        self,
        cache: FeatureCache,
        space: FeatureSpace,
        splits: tuple[Examples, ...],
        report: Progress,
    ) -> list[torch.Tensor]:
        unique: dict[bytes, int] = {}
        inverse: list[list[int]] = []
        for split in splits:
            keys = keys_of(split)
            inverse.append([unique.setdefault(key, len(unique)) for key in keys])
        keys_in_order = list(unique)
        try:
            found = cache.lookup(space.namespace, keys_in_order)
        except Exception as error:  # the cache never fails the job: a miss
            log.warning("feature cache lookup failed: %s", error)
            found = Found()
        have = [False] * len(keys_in_order)
        for position in found.positions:
            have[position] = True
        hits = sum(have[index] for rows in inverse for index in rows)
        total = sum(len(split) for split in splits)
        cache.count("hits", hits)
        cache.count("misses", total - hits)
        self.hits, self.misses = self.hits + hits, self.misses + total - hits
        if hits:
            report(hits)

        computed_positions: list[int] = []
        computed: list[torch.Tensor] = []
        done = hits
        for split, rows_inverse in zip(splits, inverse, strict=True):
            rows = []
            for row, index in enumerate(rows_inverse):
                if not have[index]:
                    have[index] = True  # a duplicate later on reuses this computation
                    rows.append(row)
                    computed_positions.append(index)
            if rows:
                computed.append(self._compute(split, rows, _shifted(report, done)).cpu())
                done += len(rows)

        table = self._table(found, computed_positions, computed, len(keys_in_order))
        if computed:
            try:
                cache.store(
                    space.namespace,
                    space.parts(),
                    [keys_in_order[index] for index in computed_positions],
                    torch.cat(computed),
                )
            except Exception as error:  # a full disk costs the next job a miss, not this one
                log.warning("feature cache write failed: %s", error)
        if done < total:
            report(total)  # duplicates of computed examples complete the phase
        return [table[torch.tensor(rows, dtype=torch.long)].to(self.device) for rows in inverse]

    @staticmethod
    def _table(
        found: Found, positions: list[int], computed: list[torch.Tensor], size: int
    ) -> torch.Tensor:
        """``[size, hidden]``: the found rows and the computed rows at their positions."""
        parts = [found.features] if found.features is not None else []
        parts.extend(computed)
        hidden = parts[0].shape[1] if parts else 0
        table = torch.zeros(size, hidden, dtype=torch.float32)
        if found.features is not None:
            table[found.positions] = found.features
        if computed:
            table[positions] = torch.cat(computed)
        return table
