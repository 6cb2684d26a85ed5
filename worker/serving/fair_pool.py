"""A thread pool that prepares work round robin by tenant, one thread per tenant at a time.

Preparing requests (loading a model, tokenizing inputs) takes a while for a large request;
with a plain FIFO pool one tenant's burst would hold every thread and delay the next tenant's
small request. Here a tenant's items are handled by one thread at a time, in batches of up to
``max_items`` (one tokenizer call for many small requests), while the other threads serve the
other tenants; the tenant handled longest ago goes first.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class FairPool(Generic[T]):
    def __init__(
        self,
        handle: Callable[[str, list[T]], None],
        *,
        threads: int = 2,
        max_items: int = 64,
        name: str = "prepare",
    ) -> None:
        self.handle = handle
        self.max_items = max(1, max_items)
        self._items: OrderedDict[str, deque[T]] = OrderedDict()
        self._busy: set[str] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, tenant: str, item: T) -> None:
        with self._cond:
            self._items.setdefault(tenant, deque()).append(item)
            self._cond.notify()

    def _next(self) -> tuple[str, list[T]] | None:
        for tenant in self._items:
            if tenant not in self._busy:
                queue = self._items.pop(tenant)  # to the back of the rotation
                taken = [queue.popleft() for _ in range(min(len(queue), self.max_items))]
                if queue:
                    self._items[tenant] = queue
                self._busy.add(tenant)
                return tenant, taken
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                picked = self._next()
                while picked is None:
                    if self._stopping:
                        return
                    self._cond.wait()
                    picked = self._next()
            tenant, items = picked
            try:
                self.handle(tenant, items)
            except Exception:
                log.exception("preparing %d item(s) of tenant %s failed", len(items), tenant)
            finally:
                with self._cond:
                    self._busy.discard(tenant)
                    self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
