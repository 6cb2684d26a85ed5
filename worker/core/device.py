"""Device choice, autocast and seeding. Nothing here touches CUDA at import time."""

from __future__ import annotations

import random
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch


def select_device(requested: torch.device | None = None) -> torch.device:
    """``requested`` if given, else CUDA when available, else CPU."""
    if requested is not None:
        return requested
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def autocast(device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA; a no-op elsewhere (CPU runs in float32)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def autocast_as(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    """Autocast to ``dtype`` on ``device``; a no-op for float32 (serving picks the dtype)."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices, lazily for CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator for the data order, independent of the global RNG."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
