"""``/v1/webhooks``: a tenant's endpoints, told when its jobs and sweeps end (docs/webhooks.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.deps import SessionDep, SettingsDep, TenantDep
from app.pagination import page
from app.webhooks import service
from app.webhooks.schemas import (
    DeliveryList,
    DeliveryRead,
    DeliveryStatus,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=201, response_model=WebhookCreated)
def create_webhook(
    body: WebhookCreate, tenant: TenantDep, session: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    """Register a URL to be told when the tenant's jobs and sweeps end. The response holds
    the endpoint's signing `secret`: shown this once, never again. A tenant may have
    `TUNESERVE_WEBHOOKS_MAX_PER_TENANT` endpoints (429 `quota_exceeded` beyond)."""
    endpoint = service.create_webhook(session, tenant_id=tenant.id, body=body, settings=settings)
    session.commit()
    return WebhookCreated(**WebhookRead.from_row(endpoint).model_dump(), secret=endpoint.secret)


@router.get("", response_model=WebhookList)
def list_webhooks(
    tenant: TenantDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> WebhookList:
    """The tenant's endpoints, newest first (never their secrets)."""
    rows = service.list_webhooks(session, tenant_id=tenant.id, cursor=cursor, limit=limit)
    rows, next_cursor = page(rows, limit)
    return WebhookList(data=[WebhookRead.from_row(r) for r in rows], next_cursor=next_cursor)


@router.get("/{webhook_id}", response_model=WebhookRead)
def get_webhook(webhook_id: str, tenant: TenantDep, session: SessionDep) -> WebhookRead:
    return WebhookRead.from_row(
        service.get_webhook(session, tenant_id=tenant.id, webhook_id=webhook_id)
    )


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, tenant: TenantDep, session: SessionDep) -> Response:
    """Remove the endpoint; its deliveries not yet sent are dropped."""
    service.delete_webhook(session, tenant_id=tenant.id, webhook_id=webhook_id)
    session.commit()
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
def list_deliveries(
    webhook_id: str,
    tenant: TenantDep,
    session: SessionDep,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    """The endpoint's deliveries, newest first: status, attempts, the last response's status
    and error, and when the next attempt is due."""
    endpoint = service.get_webhook(session, tenant_id=tenant.id, webhook_id=webhook_id)
    rows = service.list_deliveries(
        session, endpoint=endpoint, status=status, cursor=cursor, limit=limit
    )
    rows, next_cursor = page(rows, limit)
    return DeliveryList(data=[DeliveryRead.from_row(r) for r in rows], next_cursor=next_cursor)
