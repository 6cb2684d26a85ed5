"""A thread pool that takes tasks round robin by tenant, one thread per tenant at a time.

Preparing a request (loading its model, tokenizing its inputs) can take a while for a large
request; with a plain FIFO pool one tenant's burst would hold every thread and delay the
next tenant's small request. Here a tenant's tasks run one after another on a single thread,
and the other threads serve the other tenants.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class FairPool:
    def __init__(self, threads: int, *, name: str = "prepare") -> None:
        self._tasks: OrderedDict[str, deque[Callable[[], None]]] = OrderedDict()
        self._busy: set[str] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, tenant: str, task: Callable[[], None]) -> None:
        with self._cond:
            self._tasks.setdefault(tenant, deque()).append(task)
            self._cond.notify()

    def _next(self) -> tuple[str, Callable[[], None]] | None:
        for tenant in self._tasks:
            if tenant not in self._busy:
                queue = self._tasks.pop(tenant)  # to the back of the rotation
                task = queue.popleft()
                if queue:
                    self._tasks[tenant] = queue
                self._busy.add(tenant)
                return tenant, task
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
            tenant, task = picked
            try:
                task()
            except Exception:
                log.exception("task of tenant %s failed", tenant)
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
