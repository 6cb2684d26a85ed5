"""The ``webhook_endpoints`` and ``webhook_deliveries`` tables (docs/webhooks.md).

An endpoint is a tenant's URL, the events it wants and the secret its deliveries are signed
with (kept, since signing needs it; returned once, when the endpoint is made). A delivery is
one event for one endpoint: inserted in the transaction that ends the job or sweep, then
claimed by a maintenance worker with a conditional UPDATE, posted, and retried with backoff
until it is ``delivered`` or ``failed``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow

#: what an endpoint can subscribe to: a job's or a sweep's terminal status
EVENT_TYPES = (
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "sweep.succeeded",
    "sweep.failed",
    "sweep.cancelled",
)
#: ``pending`` (waiting for its next attempt) -> ``sending`` (claimed, leased) -> ``delivered``
#: | back to ``pending`` (retried later) | ``failed`` (out of attempts)
DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whk"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    #: the event types it receives (``job.succeeded``, ...)
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(500), default="")
    #: the HMAC key of its signatures; never returned after creation
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # the maintenance sweep's "what is due" (app/webhooks, worker/webhooks.py)
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whd"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    #: the JSON body exactly as it is sent (and signed) on every attempt
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: when it may be attempted (again): for ``sending``, when its lease expires
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: when a message was last sent to wake a worker for it
    woken_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: when it became ``delivered`` or ``failed``
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
