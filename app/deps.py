"""Request dependencies: the database session and the caller's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.errors import ServiceUnavailable, Unauthorized
from app.storage import Storage
from app.tenants.orm import Tenant
from app.tenants.service import tenant_for_key


def get_session() -> Iterator[Session]:
    """One session per request; the route's service flushes, this commits at the end."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise ServiceUnavailable(
            "The database is unavailable; try again shortly.", code="database_unavailable"
        ) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_storage(settings: SettingsDep) -> Storage:
    return Storage.from_settings(settings)


StorageDep = Annotated[Storage, Depends(get_storage)]


def bearer_key(authorization: str | None) -> str:
    """The key of ``Authorization: Bearer <key>``, or ``Unauthorized``."""
    if not authorization:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Malformed Authorization header: expected 'Bearer <key>'.")
    return key.strip()


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database is unavailable; try again shortly.", code="database_unavailable"
    )


def authenticate(session: Session, authorization: str | None) -> Tenant:
    """The tenant of ``Authorization: Bearer <key>``, or ``Unauthorized``."""
    key = bearer_key(authorization)
    try:
        tenant = tenant_for_key(session, key=key)
    except OperationalError as exc:
        raise database_unavailable() from exc
    if tenant is None:
        raise Unauthorized("Invalid or revoked API key.")
    return tenant


def get_tenant(
    session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> Tenant:
    return authenticate(session, authorization)


TenantDep = Annotated[Tenant, Depends(get_tenant)]
AuthorizationHeader = Annotated[str | None, Header(alias="authorization")]
