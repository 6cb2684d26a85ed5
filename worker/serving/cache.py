"""An LRU of loaded models, bounded by count and by memory (the predictors' weight bytes)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    nbytes: int


V = TypeVar("V", bound=Sized)


class ModelCache(Generic[V]):
    def __init__(self, *, max_items: int, max_bytes: int) -> None:
        self.max_items = max(1, max_items)
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_load(self, key: str, load: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            value = load()
            self._items[key] = value
            self._evict(keep=key)
            return value

    def _evict(self, *, keep: str) -> None:
        while len(self._items) > 1 and (
            len(self._items) > self.max_items or self.nbytes > self.max_bytes
        ):
            oldest = next(iter(self._items))
            if oldest == keep:
                break
            del self._items[oldest]

    def discard(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)
