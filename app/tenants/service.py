"""Tenants and API keys. A key is shown once; only its SHA-256 is kept."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.tenants.orm import ApiKey, Tenant

KEY_PREFIX = "ts_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_tenant(session: Session, *, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, *, tenant_name: str, key_name: str = "") -> tuple[ApiKey, str]:
    """Create a key for the tenant (created if needed); returns the row and the plain key."""
    tenant = get_or_create_tenant(session, name=tenant_name)
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(tenant_id=tenant.id, name=key_name, prefix=plain[:10], key_hash=hash_key(plain))
    session.add(row)
    session.flush()
    return row, plain


def tenant_for_key(session: Session, *, key: str) -> Tenant | None:
    row = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
    return None if row is None else session.get(Tenant, row.tenant_id)


def revoke_key(session: Session, *, key_id: str) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def count_keys(session: Session) -> int:
    return len(session.scalars(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))).all())
