"""Tenants and API keys. A key is shown once; only its SHA-256 is kept.

Keys are 256-bit random strings, so a fast hash is enough (no salt, no slow KDF): guessing one
is hopeless, and the lookup by hash is one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import NotFound
from app.tenants import scopes as scope_rules
from app.tenants.orm import ApiKey, Tenant

KEY_PREFIX = "ts_"
#: ``last_used_at`` is written at most this often per key
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TenantRef:
    """The caller's tenant, as routes need it (no ORM session attached)."""

    id: str
    name: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and the key, with its scopes."""

    tenant: TenantRef
    key_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def get_or_create_tenant(session: Session, *, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def _new_key(
    session: Session,
    *,
    tenant_id: str,
    key_name: str,
    scopes: list[str],
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        tenant_id=tenant_id,
        name=key_name,
        prefix=plain[:10],
        key_hash=hash_key(plain),
        scopes=scope_rules.encode(scopes),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, plain


def create_key(
    session: Session,
    *,
    tenant_name: str,
    key_name: str = "",
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for the tenant (created if needed); returns the row and the plain key."""
    tenant = get_or_create_tenant(session, name=tenant_name)
    return _new_key(
        session,
        tenant_id=tenant.id,
        key_name=key_name,
        scopes=scope_rules.parse_scopes(scopes or [scope_rules.ADMIN]),
        expires_at=expires_at,
    )


def create_tenant_key(
    session: Session,
    *,
    tenant_id: str,
    key_name: str,
    scopes: list[str],
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    return _new_key(
        session,
        tenant_id=tenant_id,
        key_name=key_name,
        scopes=scope_rules.parse_scopes(scopes),
        expires_at=expires_at,
    )


def principal_for_hash(session: Session, *, key_hash: str) -> Principal | None:
    """The caller of a key, or None for an unknown, revoked or expired key. Notes the use
    (``last_used_at``) at most once a minute."""
    now = utcnow()
    row = session.execute(
        select(ApiKey, Tenant.name)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    key, tenant_name = row
    if key.expires_at is not None and key.expires_at <= now:
        return None
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Principal(
        tenant=TenantRef(id=key.tenant_id, name=tenant_name),
        key_id=key.id,
        scopes=scope_rules.decode(key.scopes),
        expires_at=key.expires_at,
    )


def tenant_for_key(session: Session, *, key: str) -> Tenant | None:
    principal = principal_for_hash(session, key_hash=hash_key(key))
    return None if principal is None else session.get(Tenant, principal.tenant.id)


def list_keys(
    session: Session, *, tenant_id: str | None = None, include_revoked: bool = False
) -> list[tuple[ApiKey, str]]:
    """Keys with their tenant's name, newest first."""
    stmt = select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id)
    if tenant_id is not None:
        stmt = stmt.where(ApiKey.tenant_id == tenant_id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    rows = session.execute(stmt.order_by(ApiKey.created_at.desc(), ApiKey.id.desc())).all()
    return [(key, name) for key, name in rows]


def _active_key(session: Session, *, key_id: str, tenant_id: str | None) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None or (tenant_id and row.tenant_id != tenant_id):
        raise NotFound(f"API key {key_id!r} not found.")
    return row


def revoke_key(session: Session, *, key_id: str, tenant_id: str | None = None) -> ApiKey:
    """Revoke an active key (of ``tenant_id`` when given); ``NotFound`` otherwise."""
    row = _active_key(session, key_id=key_id, tenant_id=tenant_id)
    row.revoked_at = utcnow()
    session.flush()
    return row


def rotate_key(
    session: Session, *, key_id: str, tenant_id: str | None = None
) -> tuple[ApiKey, str]:
    """A new key with the old one's tenant, name, scopes and expiry; the old one is revoked."""
    old = _active_key(session, key_id=key_id, tenant_id=tenant_id)
    old.revoked_at = utcnow()
    return _new_key(
        session,
        tenant_id=old.tenant_id,
        key_name=old.name,
        scopes=list(scope_rules.decode(old.scopes)),
        expires_at=old.expires_at,
    )


def count_keys(session: Session) -> int:
    return len(session.scalars(select(ApiKey.id).where(ApiKey.revoked_at.is_(None))).all())
