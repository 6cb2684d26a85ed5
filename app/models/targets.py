"""What predict needs of a model: found with its key in one query, remembered for a moment.

Predict is the hot path (hundreds of calls a second from one client). Each call needs the
caller's tenant and the model's task, labels and artifact path: one prepared query joins the
key to the model. A :class:`TargetCache` keeps what it found for
``TUNESERVE_PREDICT_AUTH_CACHE_S`` (1 s): a revoked key, or a model deleted through another
API process, stops predicting within that time; a model deleted through this process at once.
Failed lookups (401, 404) are never remembered.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, and_, bindparam, select

from app.errors import NotFound, Unauthorized
from app.models.orm import Model
from app.tenants.orm import ApiKey


@dataclass(frozen=True)
class PredictTarget:
    """What predict needs of a model (read without an ORM session)."""

    id: str
    tenant_id: str
    task: str
    labels: list[str]
    storage_path: str


_FIND = (
    select(ApiKey.tenant_id, Model.id, Model.task, Model.labels, Model.storage_path)
    .select_from(ApiKey)
    .outerjoin(
        Model,
        and_(
            Model.id == bindparam("model_id"),
            Model.tenant_id == ApiKey.tenant_id,
            Model.deleted_at.is_(None),
        ),
    )
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


def find_target(connection: Connection, *, key_hash: str, model_id: str) -> PredictTarget:
    """``Unauthorized`` for an unknown or revoked key, ``NotFound`` for a model that is not the
    key's tenant's (or is deleted)."""
    row = connection.execute(_FIND, {"key_hash": key_hash, "model_id": model_id}).first()
    if row is None:
        raise Unauthorized("Invalid or revoked API key.")
    if row.id is None:
        raise NotFound(f"Model {model_id!r} not found.")
    return PredictTarget(
        id=row.id,
        tenant_id=row.tenant_id,
        task=row.task,
        labels=list(row.labels),
        storage_path=row.storage_path,
    )


class TargetCache:
    """Targets found, by (key hash, model id), for ``ttl_s`` seconds; at most ``max_entries``
    (the least recently found go first). ``ttl_s`` 0 remembers nothing."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._found: OrderedDict[tuple[str, str], tuple[float, PredictTarget]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_hash: str, model_id: str) -> PredictTarget | None:
        with self._lock:
            entry = self._found.get((key_hash, model_id))
            if entry is None:
                return None
            if self.clock() >= entry[0]:
                del self._found[(key_hash, model_id)]
                return None
            return entry[1]

    def put(self, key_hash: str, model_id: str, target: PredictTarget) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._found[(key_hash, model_id)] = (self.clock() + self.ttl_s, target)
            self._found.move_to_end((key_hash, model_id))
            while len(self._found) > self.max_entries:
                self._found.popitem(last=False)

    def forget_model(self, model_id: str) -> None:
        with self._lock:
            for entry in [k for k in self._found if k[1] == model_id]:
                del self._found[entry]

    def clear(self) -> None:
        with self._lock:
            self._found.clear()
