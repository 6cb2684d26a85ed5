"""What predict needs of a model: found with its key in one query, remembered for a moment.

Predict is the hot path (hundreds of calls a second from one client). Each call needs the
caller's tenant and the model's task, labels and artifact path: one prepared query joins the
key to the model. A :class:`TargetCache` keeps what it found for
``TUNESERVE_AUTH_CACHE_S`` (1 s): a revoked key, or a model deleted through another
API process, stops predicting within that time; a model deleted through this process at once.
Failed lookups (401, 404) are never remembered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select

from app.errors import NotFound
from app.models.orm import Model
from app.ttl_cache import TtlCache


@dataclass(frozen=True)
class PredictTarget:
    """What predict needs of a model (read without an ORM session)."""

    id: str
    tenant_id: str
    task: str
    labels: list[str]
    storage_path: str


_FIND = select(Model.id, Model.tenant_id, Model.task, Model.labels, Model.storage_path).where(
    Model.id == bindparam("model_id"),
    Model.tenant_id == bindparam("tenant_id"),
    Model.deleted_at.is_(None),
)


def find_target(connection: Connection, *, tenant_id: str, model_id: str) -> PredictTarget:
    """``NotFound`` for a model that is not the tenant's (or is deleted)."""
    row = connection.execute(_FIND, {"tenant_id": tenant_id, "model_id": model_id}).first()
    if row is None:
        raise NotFound(f"Model {model_id!r} not found.")
    return PredictTarget(
        id=row.id,
        tenant_id=row.tenant_id,
        task=row.task,
        labels=list(row.labels),
        storage_path=row.storage_path,
    )


class TargetCache:
    """Targets found, by (tenant id, model id), for ``ttl_s`` seconds; at most ``max_entries``
    (the least recently found go first). ``ttl_s`` 0 remembers nothing."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._found: TtlCache[tuple[str, str], PredictTarget] = TtlCache(
            ttl_s, max_entries=max_entries, clock=clock
        )

    def get(self, tenant_id: str, model_id: str) -> PredictTarget | None:
        return self._found.get((tenant_id, model_id))

    def put(self, tenant_id: str, model_id: str, target: PredictTarget) -> None:
        self._found.put((tenant_id, model_id), target)

    def forget_model(self, model_id: str) -> None:
        self._found.forget_where(lambda key, _: key[1] == model_id)

    def clear(self) -> None:
        self._found.clear()
