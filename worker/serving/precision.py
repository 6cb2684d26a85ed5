"""Serving precision: which dtype a model is served in, and the check that allows it.

At the end of training the served forward runs over the validation set in float32 and in each
reduced precision this device can run well (CUDA: bf16 where supported, and fp16; a CPU: bf16
only where it has native bf16 instructions). The share of examples whose decision is the same
as in float32 is the *agreement*; it goes into the manifest's ``serving_precision``. An
inference worker serves a model in a reduced precision only when that record says the
agreement reaches ``TUNESERVE_SERVING_MIN_AGREEMENT``; otherwise, and for artifacts without a
record, in float32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def cpu_has_native_bf16() -> bool:
    """True when oneDNN reports native bf16 support (AVX512-BF16 / AMX): only there is bf16
    autocast faster than float32 on a CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def desired_dtype(setting: str, device: torch.device) -> torch.dtype:
    """The precision a worker on ``device`` aims for under ``TUNESERVE_SERVING_DTYPE``."""
    if setting == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    wanted = DTYPES[setting]
    if device.type == "cpu" and wanted == torch.bfloat16 and not cpu_has_native_bf16():
        log.warning("this CPU has no native bf16: bf16 autocast would be slower; serving fp32")
        return torch.float32
    return wanted


def checked_dtypes(device: torch.device) -> list[torch.dtype]:
    """The reduced precisions worth checking at the end of training on ``device``."""
    if device.type == "cuda":
        return (
            [torch.bfloat16, torch.float16] if torch.cuda.is_bf16_supported() else [torch.float16]
        )
    return [torch.bfloat16] if cpu_has_native_bf16() else []


def member_dtype(
    desired: torch.dtype, manifest: dict[str, Any], *, min_agreement: float
) -> torch.dtype:
    """``desired`` when the manifest records enough agreement for it, else float32."""
    if desired == torch.float32:
        return desired
    record = (manifest.get("serving_precision") or {}).get(dtype_name(desired)) or {}
    agreement = record.get("agreement")
    if isinstance(agreement, (int, float)) and agreement >= min_agreement:
        return desired
    return torch.float32


def decisions(logits: torch.Tensor, *, multilabel: bool) -> torch.Tensor:
    """What a prediction decides: the top label, or the set of labels over 0.5."""
    if multilabel:
        return logits > 0
    return logits.argmax(dim=1)


def agreement_record(
    reference: torch.Tensor, reduced: torch.Tensor, *, multilabel: bool, device: torch.device
) -> dict[str, Any]:
    """How far ``reduced`` logits stay from the float32 ``reference`` on the same inputs."""
    same = decisions(reference, multilabel=multilabel) == decisions(reduced, multilabel=multilabel)
    if multilabel:
        same = same.all(dim=1)
    n = int(reference.shape[0])
    return {
        "agreement": float(same.float().mean()) if n else 1.0,
        "max_abs_logit_diff": float((reference - reduced).abs().max()) if n else 0.0,
        "examples": n,
        "device": device.type,
    }


def check_precision(
    logits_in: Callable[[torch.dtype], torch.Tensor],
    *,
    multilabel: bool,
    device: torch.device,
    dtypes: Sequence[torch.dtype] | None = None,
) -> dict[str, Any]:
    """``{"bfloat16": {"agreement", "max_abs_logit_diff", "examples", "device"}, ...}`` from
    ``logits_in(dtype)``: the served forward's validation logits computed in ``dtype``."""
    wanted = list(checked_dtypes(device) if dtypes is None else dtypes)
    if not wanted:
        return {}
    reference = logits_in(torch.float32).float()
    return {
        dtype_name(dtype): agreement_record(
            reference, logits_in(dtype).float(), multilabel=multilabel, device=device
        )
        for dtype in wanted
    }
