"""A tenant's webhook endpoints: create (with a new secret), list, read, delete; and the
deliveries of one endpoint. Every lookup is by the tenant too: another tenant's id is a 404."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import NotFound, RateLimited
from app.limits.quotas import QUOTA_RETRY_AFTER_S, lock_tenant
from app.pagination import paginate
from app.webhooks.addresses import check_url
from app.webhooks.orm import EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from app.webhooks.schemas import WebhookCreate


def new_secret() -> str:
    """``whsec_`` + 256 random bits."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def create_webhook(
    session: Session, *, tenant_id: str, body: WebhookCreate, settings: Settings
) -> WebhookEndpoint:
    """A new endpoint with its secret; 422 for a URL that may not be used, 429
    ``quota_exceeded`` past ``TUNESERVE_WEBHOOKS_MAX_PER_TENANT``. Flushes, never commits."""
    url = check_url(body.url, allow_private=settings.webhook_allow_private)
    lock_tenant(session, tenant_id)  # two concurrent creations cannot both take the last slot
    count = session.scalar(
        select(func.count(WebhookEndpoint.id)).where(WebhookEndpoint.tenant_id == tenant_id)
    )
    limit = settings.webhooks_max_per_tenant
    if (count or 0) >= limit:
        raise RateLimited(
            f"Quota reached: this tenant may have at most {limit} webhooks (it has {count}); "
            "delete one first, or raise TUNESERVE_WEBHOOKS_MAX_PER_TENANT.",
            code="quota_exceeded",
            details={"resource": "webhooks", "limit": limit, "used": count},
            retry_after_s=QUOTA_RETRY_AFTER_S,
        )
    events = [e for e in EVENT_TYPES if e in set(body.events)]
    endpoint = WebhookEndpoint(
        tenant_id=tenant_id,
        url=url,
        events=events,
        description=body.description,
        secret=new_secret(),
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def get_webhook(session: Session, *, tenant_id: str, webhook_id: str) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, webhook_id)
    if endpoint is None or endpoint.tenant_id != tenant_id:
        raise NotFound(f"Webhook {webhook_id!r} not found.")
    return endpoint


def list_webhooks(
    session: Session, *, tenant_id: str, cursor: str | None, limit: int
) -> list[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
    stmt = paginate(
        stmt,
        created_col=WebhookEndpoint.created_at,
        id_col=WebhookEndpoint.id,
        cursor=cursor,
        limit=limit,
    )
    return list(session.scalars(stmt))


def delete_webhook(session: Session, *, tenant_id: str, webhook_id: str) -> None:
    """Remove the endpoint and its deliveries (those not sent yet are never sent)."""
    endpoint = get_webhook(session, tenant_id=tenant_id, webhook_id=webhook_id)
    session.delete(endpoint)
    session.flush()


def list_deliveries(
    session: Session,
    *,
    endpoint: WebhookEndpoint,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> list[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    stmt = paginate(
        stmt,
        created_col=WebhookDelivery.created_at,
        id_col=WebhookDelivery.id,
        cursor=cursor,
        limit=limit,
    )
    return list(session.scalars(stmt))
