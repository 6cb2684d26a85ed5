"""One ``redis.asyncio`` client per event loop for the limits (rate, auth failures, streams).

A client is bound to the loop it first ran in; a test may run several apps, each in its own
loop, so the client is kept per loop (weakly: it goes with its loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

import redis.asyncio as aioredis

from app.config import get_settings

#: a limit check must never make a request slow: give up on Redis quickly (and let it pass)
_TIMEOUT_S = 0.5

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def limits_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            get_settings().celery_broker_url,
            max_connections=16,
            timeout=_TIMEOUT_S,
            socket_connect_timeout=_TIMEOUT_S,
            socket_timeout=_TIMEOUT_S,
        )
        client = aioredis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


async def close_limits_redis() -> None:
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        with contextlib.suppress(Exception):
            await client.aclose()


def reset_limits_redis() -> None:
    """Forget every client (tests change the broker URL between apps)."""
    _clients.clear()
