"""Timing a raw forward loop for the serving benchmarks' in-process references."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def items_per_second(
    batches: Sequence[Sequence[Any]], step: Callable[[int], object], seconds: float
) -> float:
    """Run ``step(i)`` for batch ``i``, round and round the batches, for ``seconds``; the items
    (rows of the batches run) per second."""
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for index, batch in enumerate(batches):
            step(index)
            done += len(batch)
            if time.perf_counter() - started >= seconds:
                break
    return done / (time.perf_counter() - started)
