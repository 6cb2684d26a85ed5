"""What one tenant may hold: jobs waiting or running, datasets, models, stored bytes.

Each check runs inside the transaction that would add to the count, after the tenant's row is
locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time), so two
concurrent submissions cannot both take the last slot. Counts beyond a limit give 429
``quota_exceeded``; bytes beyond the budget give 413 ``storage_quota_exceeded``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.datasets.orm import Dataset
from app.errors import PayloadTooLarge, RateLimited
from app.jobs.orm import Job
from app.models.orm import Model
from app.tenants.orm import Tenant

ACTIVE_STATUSES = ("queued", "running")
#: what a client told "quota exceeded" should wait before it looks again
QUOTA_RETRY_AFTER_S = 60


@dataclass(frozen=True)
class Usage:
    active_jobs: int
    datasets: int
    models: int
    stored_bytes: int


def usage(session: Session, *, tenant_id: str) -> Usage:
    active = session.scalar(
        select(func.count(Job.id)).where(
            Job.tenant_id == tenant_id, Job.status.in_(ACTIVE_STATUSES)
        )
    )
    datasets, dataset_bytes = session.execute(
        select(func.count(Dataset.id), func.coalesce(func.sum(Dataset.size_bytes), 0)).where(
            Dataset.tenant_id == tenant_id, Dataset.deleted_at.is_(None)
        )
    ).one()
    models, model_bytes = session.execute(
        select(func.count(Model.id), func.coalesce(func.sum(Model.size_bytes), 0)).where(
            Model.tenant_id == tenant_id, Model.deleted_at.is_(None)
        )
    ).one()
    return Usage(
        active_jobs=int(active or 0),
        datasets=int(datasets),
        models=int(models),
        stored_bytes=int(dataset_bytes) + int(model_bytes),
    )


def lock_tenant(session: Session, tenant_id: str) -> None:
    """Serialise the tenant's quota checks until the transaction ends."""
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


def _exceeded(resource: str, limit: int, used: int, setting: str) -> RateLimited:
    return RateLimited(
        f"Quota reached: this tenant may have at most {limit} {resource.replace('_', ' ')} "
        f"(it has {used}); finish, cancel or delete some first, or raise {setting}.",
        code="quota_exceeded",
        details={"resource": resource, "limit": limit, "used": used},
        retry_after_s=QUOTA_RETRY_AFTER_S,
    )


def reserve_job(session: Session, *, tenant_id: str, settings: Settings) -> None:
    """Room for one more queued job, and for the model it will make; 429 otherwise."""
    lock_tenant(session, tenant_id)
    used = usage(session, tenant_id=tenant_id)
    if used.active_jobs >= settings.max_active_jobs:
        raise _exceeded(
            "active_jobs", settings.max_active_jobs, used.active_jobs, "TUNESERVE_MAX_ACTIVE_JOBS"
        )
    future_models = used.models + used.active_jobs
    if future_models >= settings.max_models:
        raise _exceeded("models", settings.max_models, future_models, "TUNESERVE_MAX_MODELS")
    check_bytes(used, settings=settings, incoming=0)


def check_dataset_room(
    session: Session, *, tenant_id: str, settings: Settings, incoming: int = 0
) -> None:
    """Room for one more dataset of ``incoming`` bytes: 429 past the count, 413 past the bytes.
    Call it before an upload is read (``incoming`` 0: the tenant is not already full), and
    again after, under :func:`lock_tenant`, with the bytes received."""
    used = usage(session, tenant_id=tenant_id)
    if used.datasets >= settings.max_datasets:
        raise _exceeded("datasets", settings.max_datasets, used.datasets, "TUNESERVE_MAX_DATASETS")
    check_bytes(used, settings=settings, incoming=incoming)


def reserve_dataset(session: Session, *, tenant_id: str, settings: Settings, incoming: int) -> None:
    lock_tenant(session, tenant_id)
    check_dataset_room(session, tenant_id=tenant_id, settings=settings, incoming=incoming)


def check_bytes(used: Usage, *, settings: Settings, incoming: int) -> None:
    """413 when the tenant is full, or when ``incoming`` more bytes would pass its budget."""
    full = used.stored_bytes >= settings.max_stored_bytes
    if full or used.stored_bytes + incoming > settings.max_stored_bytes:
        raise PayloadTooLarge(
            f"Storage quota reached: this tenant stores {used.stored_bytes} of "
            f"{settings.max_stored_bytes} bytes; delete datasets or models first, or raise "
            "TUNESERVE_MAX_STORED_BYTES.",
            code="storage_quota_exceeded",
            details={
                "resource": "stored_bytes",
                "limit": settings.max_stored_bytes,
                "used": used.stored_bytes,
                "incoming": incoming,
            },
        )
