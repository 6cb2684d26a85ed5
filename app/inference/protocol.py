"""The inference queue in Redis: key names, messages, and the fair pop (shared by API and worker).

Predict requests do not go through Celery. The API appends each request to its tenant's own
list and wakes the workers; an inference worker pops from every tenant's list in turn (one
Lua script, atomic), so a tenant with a thousand queued requests delays another tenant's
request by one round, not by a thousand. Answers come back on a list per API process, which
one listener task per process drains (docs/serving.md).

Keys (all under ``tuneserve:infer:``):

- ``tenants``: set of tenant ids that may have queued requests
- ``q:{tenant}``: list of that tenant's queued requests (JSON), oldest first
- ``wake``: a list holding at most one token; a producer pushes it, an idle worker BLPOPs it
- ``turn``: a counter that rotates which tenant is popped first
- ``reply:{instance}``: list of answers for one API process
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

PREFIX = "tuneserve:infer:"
TENANTS_KEY = PREFIX + "tenants"
QUEUE_PREFIX = PREFIX + "q:"
WAKE_KEY = PREFIX + "wake"
TURN_KEY = PREFIX + "turn"
REPLY_PREFIX = PREFIX + "reply:"
#: a reply list nobody reads any more (its API process died) disappears after this long
REPLY_TTL_S = 300

#: pops up to ARGV[2] requests from each tenant's list, starting at a rotating tenant, until
#: ARGV[3] requests in all; ARGV[4..] are tenants to leave alone this time (their share of the
#: worker's memory is full). A tenant whose list is empty leaves the set.
POP_FAIR_LUA = """
local tenants = redis.call('SMEMBERS', KEYS[1])
local n = #tenants
local out = {}
if n == 0 then return out end
local skip = {}
for i = 4, #ARGV do skip[ARGV[i]] = true end
local per_tenant = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local start = redis.call('INCR', KEYS[2]) % n
for j = 0, n - 1 do
  local tenant = tenants[((start + j) % n) + 1]
  if not skip[tenant] then
    local key = ARGV[1] .. tenant
    local items = redis.call('LPOP', key, math.min(per_tenant, limit - #out))
    if items then
      for _, item in ipairs(items) do out[#out + 1] = item end
    end
    if redis.call('LLEN', key) == 0 then redis.call('SREM', KEYS[1], tenant) end
    if #out >= limit then break end
  end
end
return out
"""


#: appends ARGV[2] to the tenant's list KEYS[1] (expiring after ARGV[3] s), enters the tenant
#: ARGV[1] in the set KEYS[2] and leaves one wake token in KEYS[3]: one round trip per request
ENQUEUE_LUA = """
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], 1)
redis.call('LTRIM', KEYS[3], 0, 0)
return 1
"""


def queue_key(tenant_id: str) -> str:
    return QUEUE_PREFIX + tenant_id


def new_reply_key() -> str:
    return REPLY_PREFIX + uuid.uuid4().hex


@dataclass
class InferRequest:
    """One predict request as it travels to a worker. ``deadline`` is a Unix time: a worker
    computes nothing for a request past it (the API has answered 504 by then)."""

    model_id: str
    storage_path: str
    task: str
    tenant: str
    inputs: list[Any]
    top_k: int
    deadline: float
    reply_to: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent_at: float = field(default_factory=time.time)

    def encode(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> InferRequest:
        data = json.loads(raw)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass
class InferReply:
    """A worker's answer: ``predictions``, or an error with the HTTP status it maps to."""

    id: str
    predictions: list[dict[str, Any]] | None = None
    status: int = 200
    code: str | None = None
    message: str | None = None
    details: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def encode(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> InferReply:
        data = json.loads(raw)
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})
