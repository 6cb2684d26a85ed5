"""A cap on the live event streams of each tenant, kept in the broker's Redis.

Each tenant has one sorted set, ``tuneserve:streams:{tenant_id}``, of the ids of its open
streams, each scored by the time (Redis's clock, in ms) at which it stops counting. A live
stream refreshes its score every third of ``TUNESERVE_STREAM_SLOT_TTL_S`` and removes itself
when it ends (client gone, job over, error, shutdown). The slots of an API process that died
without removing them stop counting once their score passes, so no count can leak; and as the
set lives in Redis, the cap holds across every API process that shares the broker.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis.exceptions import RedisError

from app.limits.redis_client import limits_redis

#: Redis key prefix of the per-tenant sets
KEY_PREFIX = "tuneserve:streams:"

# KEYS[1]: the tenant's set; ARGV: stream id, cap, ttl in ms. 1 when taken, 0 when full.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1]: the tenant's set; ARGV: stream id, ttl in ms. Adds the slot back if a flush of
# Redis removed it, so the count stays the number of live streams.
_REFRESH_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class SlotsUnavailable(Exception):
    """Redis did not answer."""


@dataclass(frozen=True)
class StreamSlot:
    """One stream's place in its tenant's cap."""

    tenant_id: str
    stream_id: str
    ttl_ms: int

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.tenant_id

    @property
    def refresh_every_s(self) -> float:
        return self.ttl_ms / 3000

    async def refresh(self) -> None:
        try:
            script = limits_redis().register_script(_REFRESH_LUA)
            await script(keys=[self.key], args=[self.stream_id, self.ttl_ms])
        except (RedisError, OSError) as exc:
            raise SlotsUnavailable(type(exc).__name__) from exc

    async def release(self) -> None:
        try:
            await limits_redis().zrem(self.key, self.stream_id)
        except (RedisError, OSError) as exc:
            raise SlotsUnavailable(type(exc).__name__) from exc


async def acquire(*, tenant_id: str, cap: int, ttl_s: float) -> StreamSlot | None:
    """A slot for a new stream of ``tenant_id``, or None when it holds ``cap`` already.

    Raises :class:`SlotsUnavailable` when Redis does not answer."""
    slot = StreamSlot(
        tenant_id=tenant_id, stream_id=secrets.token_hex(8), ttl_ms=max(1, int(ttl_s * 1000))
    )
    try:
        script = limits_redis().register_script(_ACQUIRE_LUA)
        taken = await script(keys=[slot.key], args=[slot.stream_id, cap, slot.ttl_ms])
    except (RedisError, OSError) as exc:
        raise SlotsUnavailable(type(exc).__name__) from exc
    return slot if int(taken) else None
