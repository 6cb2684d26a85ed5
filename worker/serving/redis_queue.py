"""The worker's side of the inference queue in Redis (keys and messages: app/inference)."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from app.inference.protocol import (
    POP_FAIR_LUA,
    QUEUE_PREFIX,
    REPLY_TTL_S,
    TENANTS_KEY,
    TURN_KEY,
    WAKE_KEY,
    InferReply,
)


class InferenceQueue:
    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=10.0, health_check_interval=30
        )
        self._pop_fair = self.redis.register_script(POP_FAIR_LUA)

    def pop(self, *, per_tenant: int, limit: int, skip: Sequence[str] = ()) -> list[bytes]:
        """Up to ``per_tenant`` requests from each tenant's list in turn, ``limit`` in all,
        leaving the tenants in ``skip`` alone."""
        found = self._pop_fair(
            keys=[TENANTS_KEY, TURN_KEY], args=[QUEUE_PREFIX, per_tenant, limit, *skip]
        )
        return list(found or [])

    def wait(self, timeout: float) -> None:
        """Block until a producer wakes the workers, or ``timeout`` seconds."""
        self.redis.blpop([WAKE_KEY], timeout=timeout)

    def send(self, replies: Sequence[tuple[str, InferReply]]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for reply_to, reply in replies:
                pipe.rpush(reply_to, reply.encode())
                pipe.expire(reply_to, REPLY_TTL_S)
            pipe.execute()
