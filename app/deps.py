"""Request dependencies: the database session and the caller's tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.errors import ServiceUnavailable, Unauthorized
from app.middleware.auth_gate import PRINCIPAL_STATE
from app.storage import Storage
from app.tenants.service import Principal, TenantRef


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


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database is unavailable; try again shortly.", code="database_unavailable"
    )


def get_principal(request: Request) -> Principal:
    """The caller, authenticated by :class:`app.middleware.auth_gate.AuthGate` before the
    route (and its body) was touched."""
    principal = request.scope.get("state", {}).get(PRINCIPAL_STATE)
    if not isinstance(principal, Principal):  # a route outside /v1 asked for a tenant
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_tenant(principal: PrincipalDep) -> TenantRef:
    return principal.tenant


TenantDep = Annotated[TenantRef, Depends(get_tenant)]
