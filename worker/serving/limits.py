"""What bounds an inference worker: forward threads, the token budget of one forward pass, and
the inputs it holds in memory (in all and per tenant)."""

from __future__ import annotations

import os
import threading
from collections import Counter

import torch

from app.config import Settings


def forward_threads(settings: Settings) -> int:
    """Threads for the forward pass on a CPU: one fewer than the cores, so that the API,
    tokenizing and Redis keep one (docs/serving.md has the measurements)."""
    if settings.serving_torch_threads > 0:
        return settings.serving_torch_threads
    return max(1, (os.cpu_count() or 1) - 1)


def batch_token_budget(settings: Settings, device: torch.device) -> int:
    if settings.serving_max_batch_tokens > 0:
        return settings.serving_max_batch_tokens
    return 16384 if device.type == "cuda" else 512


class Admission:
    """Inputs taken from Redis and not answered yet, in all and per tenant."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.total = 0
        self.by_tenant: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, tenant: str, inputs: int) -> None:
        with self._lock:
            self.total += inputs
            self.by_tenant[tenant] += inputs

    def give_back(self, tenant: str, inputs: int) -> None:
        with self._lock:
            self.total -= inputs
            self.by_tenant[tenant] -= inputs
            if self.by_tenant[tenant] <= 0:
                del self.by_tenant[tenant]

    def full(self) -> bool:
        return self.total >= self.limit

    def full_tenants(self) -> list[str]:
        with self._lock:
            return [t for t, n in self.by_tenant.items() if n >= self.limit // 2]
