"""A small thread-safe cache whose entries expire after a fixed time, least recently stored
going first beyond a size. Used for what an API process may remember for a moment: keys
(:mod:`app.middleware.principals`) and predict targets (:mod:`app.models.targets`)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Entries for ``ttl_s`` seconds; at most ``max_entries``. ``ttl_s`` 0 remembers nothing."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._found: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._found.get(key)
            if entry is None:
                return None
            if self.clock() >= entry[0]:
                del self._found[key]
                return None
            return entry[1]

    def put(self, key: K, value: V) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._found[key] = (self.clock() + self.ttl_s, value)
            self._found.move_to_end(key)
            while len(self._found) > self.max_entries:
                self._found.popitem(last=False)

    def forget_where(self, stale: Callable[[K, V], bool]) -> None:
        with self._lock:
            for key in [k for k, (_, v) in self._found.items() if stale(k, v)]:
                del self._found[key]

    def clear(self) -> None:
        with self._lock:
            self._found.clear()
