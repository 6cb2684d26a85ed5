"""``GET /v1/usage``: what the caller's tenant uses, against its limits."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.deps import PrincipalDep, SessionDep, SettingsDep
from app.limits.quotas import usage

router = APIRouter(prefix="/v1/usage", tags=["usage"])


class Quantity(BaseModel):
    used: int
    limit: int


class RateLimit(BaseModel):
    requests_per_minute: int = Field(description="0 means no limit.")
    burst: int


class UsageRead(BaseModel):
    tenant_id: str
    key_id: str
    key_scopes: list[str]
    active_jobs: Quantity = Field(description="Queued plus running jobs.")
    datasets: Quantity
    models: Quantity
    stored_bytes: Quantity = Field(description="Bytes of datasets and models kept.")
    rate_limit: RateLimit = Field(description="Requests per API key.")


@router.get("", response_model=UsageRead)
def get_usage(principal: PrincipalDep, session: SessionDep, settings: SettingsDep) -> UsageRead:
    """The tenant's use of each quota and the key's request rate limit."""
    used = usage(session, tenant_id=principal.tenant.id)
    return UsageRead(
        tenant_id=principal.tenant.id,
        key_id=principal.key_id,
        key_scopes=list(principal.scopes),
        active_jobs=Quantity(used=used.active_jobs, limit=settings.max_active_jobs),
        datasets=Quantity(used=used.datasets, limit=settings.max_datasets),
        models=Quantity(used=used.models, limit=settings.max_models),
        stored_bytes=Quantity(used=used.stored_bytes, limit=settings.max_stored_bytes),
        rate_limit=RateLimit(
            requests_per_minute=settings.rate_limit_per_minute, burst=settings.rate_limit_burst
        ),
    )
