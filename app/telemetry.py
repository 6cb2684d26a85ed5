"""Fleet counters: events counted by short-lived processes, kept in Redis, exported by the API.

A training job runs in a child process that exits when the job ends (``--max-tasks-per-child
1``), so a Prometheus counter held in its memory would vanish before any scrape. Counters
that such processes bump (feature-cache hits, misses, evictions) are therefore kept in one
Redis hash, shared by every machine, and the API's ``GET /metrics`` exports them
(:class:`FleetCounterCollector`). Counting is best effort: a Redis outage never fails the
work that is being counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from app.config import get_settings

log = logging.getLogger(__name__)

COUNTERS_KEY = "tuneserve:counters"

#: every fleet counter, with its help text (the names exported, without ``_total``)
FLEET_COUNTERS: dict[str, str] = {
    "tuneserve_feature_cache_hits": "Examples whose pooled features came from the feature cache.",
    "tuneserve_feature_cache_misses": "Examples whose features the encoder had to compute.",
    "tuneserve_feature_cache_writes": "Feature-cache entries written.",
    "tuneserve_feature_cache_evictions": "Feature-cache entries evicted to stay in budget.",
    "tuneserve_feature_cache_rejected": "Feature-cache entries that failed their check.",
}


@lru_cache
def _client() -> Any:
    import redis

    url = get_settings().celery_broker_url
    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)


def count(name: str, amount: int = 1) -> None:
    """Add ``amount`` to the fleet counter ``name`` (one of :data:`FLEET_COUNTERS`)."""
    if name not in FLEET_COUNTERS:
        raise ValueError(f"unknown fleet counter {name!r}")
    if amount <= 0:
        return
    try:
        _client().hincrby(COUNTERS_KEY, name, amount)
    except Exception as exc:  # counting must never fail the counted work
        log.debug("fleet counter %s not counted: %s", name, exc)


def read_counters() -> dict[str, int]:
    """The current value of every fleet counter (0 for one never counted)."""
    values = {name: 0 for name in FLEET_COUNTERS}
    raw: dict[bytes, bytes] = _client().hgetall(COUNTERS_KEY)
    for key, value in raw.items():
        name = key.decode()
        if name in values:
            values[name] = int(value)
    return values


class FleetCounterCollector:
    """A Prometheus collector exporting the fleet counters (nothing when Redis is down)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        try:
            values = read_counters()
        except Exception as exc:
            log.debug("fleet counters unavailable: %s", exc)
            return
        for name, value in values.items():
            family = CounterMetricFamily(name, FLEET_COUNTERS[name])
            family.add_metric([], value)
            yield family


def reset_client() -> None:
    """Forget the Redis client (tests change the broker URL between runs)."""
    _client.cache_clear()
