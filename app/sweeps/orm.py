from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow

SWEEP_STATUSES = ("running", "succeeded", "failed", "cancelled")


class Sweep(Base):
    """A strategy bake-off: sibling jobs (``Job.sweep_id``) on one split, ranked by ``metric``.

    ``status`` stays ``running`` while any candidate job is unfinished; when all are, the best
    succeeded candidate's model becomes the sweep's ``model_id`` (promotion) in one
    conditional UPDATE, so settling twice is harmless.
    """

    __tablename__ = "sweeps"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_sweeps_tenant_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("swp"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    base_model: Mapped[str] = mapped_column(String(200))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    validation_dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id"), nullable=True
    )
    test_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    #: the validation metric candidates are ranked by, and whether lower or higher wins
    metric: Mapped[str] = mapped_column(String(40))
    mode: Mapped[str] = mapped_column(String(8))
    #: the request as submitted (strategies, learning rates, shared hyperparameters)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    winner_job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
