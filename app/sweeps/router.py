from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response

from app.deps import SessionDep, SettingsDep, TenantDep
from app.pagination import page
from app.sweeps import service
from app.sweeps.schemas import SweepCreate, SweepList, SweepRead

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


@router.post("", status_code=201, response_model=SweepRead)
def create_sweep(
    body: SweepCreate,
    response: Response,
    tenant: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> SweepRead:
    """Start a strategy bake-off: one queued job per strategy x learning rate, all on the same
    split, ranked by `metric`. When every candidate has finished, the best one's model is
    promoted to the sweep's `model_id`.

    Every candidate is validated first; if one fails, nothing is created (the error names it
    in `details.candidate`). `Idempotency-Key` works as for jobs."""
    sweep, created = service.create_sweep(
        session,
        tenant_id=tenant.id,
        body=body,
        settings=settings,
        idempotency_key=idempotency_key,
    )
    (read,) = service.describe(session, [sweep])
    session.commit()  # the train tasks are sent after this commit
    if not created:
        response.status_code = 200
    return read


@router.get("", response_model=SweepList)
def list_sweeps(
    tenant: TenantDep,
    session: SessionDep,
    status: Annotated[
        Literal["running", "succeeded", "failed", "cancelled"] | None, Query()
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SweepList:
    """The tenant's sweeps, newest first, with their leaderboards."""
    rows = service.list_sweeps(
        session, tenant_id=tenant.id, status=status, cursor=cursor, limit=limit
    )
    rows, next_cursor = page(rows, limit)
    reads = service.describe(session, rows)
    session.commit()  # a sweep whose candidates have all finished was settled just now
    return SweepList(data=reads, next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=SweepRead)
def get_sweep(sweep_id: str, tenant: TenantDep, session: SessionDep) -> SweepRead:
    """The sweep and its leaderboard; settles it (promotion) if every candidate has finished."""
    sweep = service.get_sweep(session, tenant_id=tenant.id, sweep_id=sweep_id)
    (read,) = service.describe(session, [sweep])
    session.commit()
    return read


@router.post("/{sweep_id}/cancel", response_model=SweepRead)
def cancel_sweep(sweep_id: str, tenant: TenantDep, session: SessionDep) -> SweepRead:
    """Cancel the sweep and its unfinished candidates (queued at once, running at the next
    step); nothing is promoted. A finished sweep answers 409 `sweep_finished`."""
    sweep = service.cancel_sweep(session, tenant_id=tenant.id, sweep_id=sweep_id)
    (read,) = service.describe(session, [sweep])
    session.commit()
    return read
