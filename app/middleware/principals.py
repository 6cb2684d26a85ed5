"""Keys found, remembered for a moment (``TUNESERVE_AUTH_CACHE_S``, 1 s by default).

Every request under ``/v1`` is authenticated before its route runs; remembering a key that was
found for a second spares the database one query per request on the hot paths (predict, polls)
while a revoked or expired key stops working within that second (at once when revoked through
this process). Keys that were not found are never remembered: their cost is bounded by the
per-address failure limit instead.
"""

from __future__ import annotations

from app.tenants.service import Principal
from app.ttl_cache import TtlCache


class PrincipalCache(TtlCache[str, Principal]):
    """Principals by key hash."""

    def forget_key(self, key_id: str) -> None:
        self.forget_where(lambda _, principal: principal.key_id == key_id)
