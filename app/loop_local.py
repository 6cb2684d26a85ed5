"""One object per running event loop (made on first use, gone with its loop).

Async clients and limiters are bound to the loop they first ran in; a test may run several
apps, each in its own loop. Used for the inference gateway, the limits' Redis client and the
event streams' database limiter.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._objects: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        """The running loop's object."""
        loop = asyncio.get_running_loop()
        found = self._objects.get(loop)
        if found is None:
            found = self._objects[loop] = self._factory()
        return found

    def pop(self) -> T | None:
        """Forget the running loop's object and return it (to close it), if it had one."""
        return self._objects.pop(asyncio.get_running_loop(), None)

    def clear(self) -> None:
        """Forget every loop's object (tests change settings between apps)."""
        self._objects.clear()
