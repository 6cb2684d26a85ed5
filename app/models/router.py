from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.deps import SessionDep, SettingsDep, StorageDep, TenantDep
from app.models import service
from app.models.schemas import ModelList, ModelRead, Prediction, PredictRequest, PredictResponse
from app.pagination import page

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList)
def list_models(
    tenant: TenantDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ModelList:
    rows = service.list_models(session, tenant_id=tenant.id, cursor=cursor, limit=limit)
    rows, next_cursor = page(rows, limit)
    return ModelList(data=[ModelRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{model_id}", response_model=ModelRead)
def get_model(model_id: str, tenant: TenantDep, session: SessionDep) -> ModelRead:
    return ModelRead.model_validate(
        service.get_model(session, tenant_id=tenant.id, model_id=model_id)
    )


@router.delete("/{model_id}", status_code=204)
def delete_model(
    model_id: str, tenant: TenantDep, session: SessionDep, storage: StorageDep
) -> Response:
    model = service.delete_model(session, tenant_id=tenant.id, model_id=model_id)
    session.commit()
    service.remove_files(model, storage=storage)
    return Response(status_code=204)


@router.post("/{model_id}/predict", response_model=PredictResponse)
def predict(
    model_id: str,
    body: PredictRequest,
    tenant: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
) -> PredictResponse:
    """Classify inputs with the model. Served by an inference worker through the `infer`
    queue; 504 when it does not answer within `TUNESERVE_PREDICT_TIMEOUT_S`."""
    model = service.get_model(session, tenant_id=tenant.id, model_id=model_id)
    session.close()  # do not hold a connection while waiting for the worker
    predictions = service.predict(model, body=body, settings=settings)
    return PredictResponse(
        model_id=model.id, predictions=[Prediction.model_validate(p) for p in predictions]
    )
