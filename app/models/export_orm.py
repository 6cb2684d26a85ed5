"""The ``exports`` table: one row per built export variant of a model (docs/models.md, Export).

Only the variants that need torch have a row (a ``lora`` artifact merged into a full model, a
``head`` artifact rebuilt as a full classification model): the API inserts the row, commits,
then wakes a worker; the worker claims it with a conditional UPDATE, renews its lease while it
builds, writes the archive atomically and marks the row ``ready`` (or ``failed`` with its
error). Exports of an artifact as it is are streamed by the API and have no row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow

EXPORT_STATUSES = ("queued", "running", "ready", "failed")
#: the variants a worker builds: ``merged`` (lora -> full), ``full`` (head -> full)
EXPORT_VARIANTS = ("merged", "full")


class ModelExport(Base):
    """The truth about one export variant of a model; workers change it conditionally."""

    __tablename__ = "exports"
    __table_args__ = (UniqueConstraint("model_id", "variant", name="uq_exports_model_variant"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("exp"))
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    variant: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    #: ``{"code", "message", "status"}`` of a failed build (``status``: the HTTP status)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: the archive, relative to the storage root, once ``ready``
    archive_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: when a message last went out for it (a queued row is sent again when it grows old)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
