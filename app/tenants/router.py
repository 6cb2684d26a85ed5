"""``/v1/keys``: a tenant's admin key lists, creates, revokes and rotates the tenant's keys."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from app.db import utcnow
from app.deps import SessionDep, TenantDep
from app.tenants import service
from app.tenants.schemas import KeyCreate, KeyCreated, KeyList, KeyRead

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def _forget(request: Request, key_id: str) -> None:
    """This process stops accepting the key at once (others within the auth cache time)."""
    principals = getattr(request.app.state, "principals", None)
    if principals is not None:
        principals.forget_key(key_id)


@router.get("", response_model=KeyList)
def list_keys(tenant: TenantDep, session: SessionDep, include_revoked: bool = False) -> KeyList:
    """The tenant's keys, newest first (never the keys themselves: only their prefixes)."""
    rows = service.list_keys(session, tenant_id=tenant.id, include_revoked=include_revoked)
    return KeyList(data=[KeyRead.from_row(key) for key, _ in rows])


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, tenant: TenantDep, session: SessionDep) -> KeyCreated:
    """A new key for the tenant. The response holds the key: it is shown this once."""
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    row, plain = service.create_tenant_key(
        session,
        tenant_id=tenant.id,
        key_name=body.name,
        scopes=list(body.scopes),
        expires_at=expires,
    )
    session.commit()
    return KeyCreated(**KeyRead.from_row(row).model_dump(), key=plain)


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: str, request: Request, tenant: TenantDep, session: SessionDep) -> Response:
    """Revoke a key of the tenant (this one included)."""
    service.revoke_key(session, key_id=key_id, tenant_id=tenant.id)
    session.commit()
    _forget(request, key_id)
    return Response(status_code=204)


@router.post("/{key_id}/rotate", status_code=201, response_model=KeyCreated)
def rotate_key(key_id: str, request: Request, tenant: TenantDep, session: SessionDep) -> KeyCreated:
    """Replace a key: a new key with the same name, scopes and expiry; the old one is revoked."""
    row, plain = service.rotate_key(session, key_id=key_id, tenant_id=tenant.id)
    session.commit()
    _forget(request, key_id)
    return KeyCreated(**KeyRead.from_row(row).model_dump(), key=plain)
