from __future__ import annotations

from datetime import datetime
from typing import Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field

from app.webhooks.addresses import MAX_URL_CHARS
from app.webhooks.orm import EVENT_TYPES, WebhookDelivery, WebhookEndpoint

EventType = Literal[
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "sweep.succeeded",
    "sweep.failed",
    "sweep.cancelled",
]
DeliveryStatus = Literal["pending", "sending", "delivered", "failed"]
assert get_args(EventType) == EVENT_TYPES


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="Where events are POSTed: http or https, no credentials in it.",
        examples=["https://example.com/hooks/tuneserve"],
    )
    events: list[EventType] = Field(
        default_factory=lambda: list(get_args(EventType)),
        min_length=1,
        max_length=len(EVENT_TYPES),
        description="The events to receive (default: all of them).",
    )
    description: str = Field("", max_length=500, description="A note for people.")


class WebhookRead(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: WebhookEndpoint) -> WebhookRead:
        return cls(
            id=row.id,
            url=row.url,
            events=list(row.events),
            description=row.description,
            created_at=row.created_at,
        )


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="The key of the deliveries' `Tuneserve-Signature`: shown this once, never "
        "again (docs/webhooks.md, verifying a delivery)."
    )


class WebhookList(BaseModel):
    data: list[WebhookRead]
    next_cursor: str | None = None


class DeliveryRead(BaseModel):
    id: str = Field(description="Sent as `Tuneserve-Delivery`.")
    webhook_id: str
    event_id: str = Field(description="The event's `id` (the same for every endpoint).")
    event_type: str
    status: DeliveryStatus
    attempts: int
    response_status: int | None = Field(description="The HTTP status of the last attempt.")
    last_error: str | None = Field(description="Why the last attempt failed (cut short).")
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due (null once delivered or failed)."
    )
    finished_at: datetime | None = Field(description="When it was delivered or gave up.")

    @classmethod
    def from_row(cls, row: WebhookDelivery) -> DeliveryRead:
        finished = row.status in ("delivered", "failed")
        return cls(
            id=row.id,
            webhook_id=row.endpoint_id,
            event_id=row.event_id,
            event_type=row.event_type,
            status=cast(DeliveryStatus, row.status),
            attempts=row.attempts,
            response_status=row.response_status,
            last_error=row.last_error,
            created_at=row.created_at,
            last_attempt_at=row.last_attempt_at,
            next_attempt_at=None if finished else row.next_attempt_at,
            finished_at=row.finished_at,
        )


class DeliveryList(BaseModel):
    data: list[DeliveryRead]
    next_cursor: str | None = None
