"""Rate limits kept in Redis, so that they hold across API processes.

- Requests per key: the generic cell rate algorithm (GCRA), one Redis key per API key holding
  its "theoretical arrival time"; a steady ``per_minute`` with ``burst`` requests at once.
  One round trip (a Lua script, on Redis's own clock) per request.
- Failed authentications per client address: a counter per address and minute. It is read
  before a key is looked up, so a client guessing keys is turned away without costing a query.

When Redis does not answer, the limits let requests through (and log it): Redis being down
must not turn every request into an error; the job queue's own 503 covers what needs Redis.
"""

from __future__ import annotations

import logging
import time

from app.limits.redis_client import limits_redis

log = logging.getLogger(__name__)

_PREFIX = "tuneserve:limit:"

# KEYS[1]: the bucket; ARGV: interval between requests (µs), burst tolerance (µs).
# Returns 0 when the request may go, else the microseconds until it may.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tolerance - now
if wait > 0 then return wait end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return 0
"""


async def key_wait_s(key_id: str, *, per_minute: int, burst: int) -> float:
    """0 when ``key_id`` may make a request now (the request is counted), else the seconds
    until it may."""
    if per_minute <= 0:
        return 0.0
    interval_us = 60_000_000 // per_minute
    tolerance_us = interval_us * max(1, burst)
    try:
        script = limits_redis().register_script(GCRA_LUA)  # EVALSHA, EVAL once per server
        wait_us = await script(keys=[f"{_PREFIX}key:{key_id}"], args=[interval_us, tolerance_us])
    except Exception as exc:
        log.warning("rate limit not checked (Redis: %s)", type(exc).__name__)
        return 0.0
    return int(wait_us) / 1_000_000


def _failure_bucket(address: str) -> str:
    return f"{_PREFIX}authfail:{address}:{int(time.time() // 60)}"


async def auth_failure_wait_s(address: str, *, per_minute: int) -> float:
    """Seconds until ``address`` may try a key again (0: now)."""
    if per_minute <= 0:
        return 0.0
    try:
        count = await limits_redis().get(_failure_bucket(address))
    except Exception as exc:
        log.warning("auth failures not checked (Redis: %s)", type(exc).__name__)
        return 0.0
    if count is None or int(count) < per_minute:
        return 0.0
    return 60 - time.time() % 60


async def note_auth_failure(address: str) -> None:
    bucket = _failure_bucket(address)
    try:
        client = limits_redis()
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(bucket)
            pipe.expire(bucket, 120)
            await pipe.execute()
    except Exception as exc:
        log.warning("auth failure not counted (Redis: %s)", type(exc).__name__)
