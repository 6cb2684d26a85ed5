"""One ``redis.asyncio`` client per event loop for the limits (rate, auth failures, streams).

A client is bound to the loop it first ran in; a test may run several apps, each in its own
loop, so the client is kept per loop (weakly: it goes with its loop).
"""

from __future__ import annotations

import contextlib

import redis.asyncio as aioredis

from app.config import get_settings
from app.loop_local import LoopLocal

#: a limit check must never make a request slow: give up on Redis quickly (and let it pass)
_TIMEOUT_S = 0.5


def _new_client() -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        get_settings().celery_broker_url,
        max_connections=16,
        timeout=_TIMEOUT_S,
        socket_connect_timeout=_TIMEOUT_S,
        socket_timeout=_TIMEOUT_S,
    )
    return aioredis.Redis(connection_pool=pool)


_clients: LoopLocal[aioredis.Redis] = LoopLocal(_new_client)


def limits_redis() -> aioredis.Redis:
    return _clients.get()


async def close_limits_redis() -> None:
    client = _clients.pop()
    if client is not None:
        with contextlib.suppress(Exception):
            await client.aclose()


def reset_limits_redis() -> None:
    """Forget every client (tests change the broker URL between apps)."""
    _clients.clear()
