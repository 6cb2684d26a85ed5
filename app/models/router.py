from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from sqlalchemy.exc import OperationalError

from app.config import get_settings
from app.db import get_engine
from app.deps import SessionDep, SettingsDep, StorageDep, TenantDep, database_unavailable
from app.models import export_service, service
from app.models.export_archive import MEDIA_TYPE, artifact_tar_gz
from app.models.export_schemas import ExportRead
from app.models.predict_body import read_predict_body
from app.models.schemas import ModelList, ModelRead, Prediction, PredictResponse
from app.models.targets import PredictTarget, TargetCache, find_target
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
    target_cache().forget_model(model_id)
    service.remove_files(model, storage=storage)
    return Response(status_code=204)


_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The model as a `.tar.gz` archive of one folder (named by the model's "
        "id) that `transformers` loads, its tokenizer or image processor and `manifest.json` "
        "inside (docs/models.md, Export).",
        "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "Content-Disposition": {
                "description": '`attachment; filename="<model id>-<variant>.tar.gz"`',
                "required": True,
                "schema": {"type": "string"},
            }
        },
    },
    202: {
        "model": ExportRead,
        "description": "A worker is building this variant: ask again after `Retry-After` "
        "seconds; the same request then answers the archive.",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before asking again.",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        },
    },
    409: {
        "description": "The build failed (`artifact_unusable`, `export_failed`, "
        "`worker_lost`; asking again after 10 minutes tries again), or the artifact or its "
        "base model is not available (`artifact_unusable`, `base_model_unavailable`)."
    },
    422: {
        "description": "`export_unsupported`: `as_full` on a head whose pooled vector is not "
        "what the architecture's own classifier reads (export the head as it is); or an "
        "invalid query parameter."
    },
}


@router.get("/{model_id}/export", response_class=StreamingResponse, responses=_EXPORT_RESPONSES)
def export_model(
    model_id: str,
    tenant: TenantDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    merge_lora: Annotated[
        bool,
        Query(
            description="`lora` models: merge the adapter into the base (a full model, "
            "built by a worker); `false` exports the PEFT adapter directory as it is."
        ),
    ] = True,
    as_full: Annotated[
        bool,
        Query(
            description="`head` models: the base and the head as the architecture's own "
            "classification model (built by a worker), where that is exact; else 422."
        ),
    ] = False,
) -> Response:
    """The model as a `.tar.gz` archive that plain `transformers` loads (docs/models.md,
    Export). `full` models, adapters (`merge_lora=false`) and heads (without `as_full`) stream
    at once; a merge or a head as a full model is built by a worker: `202` with the build's
    status and `Retry-After` until it is ready, then the archive."""
    model = service.get_model(session, tenant_id=tenant.id, model_id=model_id)
    outcome = export_service.plan(
        session, model, storage=storage, settings=settings, merge_lora=merge_lora, as_full=as_full
    )
    session.commit()
    if isinstance(outcome, export_service.AsIs):
        return StreamingResponse(
            artifact_tar_gz(outcome.directory, arcname=model.id),
            media_type=MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{outcome.filename}"'},
        )
    if outcome.status == "ready" and outcome.archive_path is not None:
        return FileResponse(
            storage.path(outcome.archive_path),
            media_type=MEDIA_TYPE,
            filename=export_service.archive_filename(model.id, outcome.variant),
        )
    if outcome.status == "failed":
        raise export_service.failure(outcome)
    return JSONResponse(
        ExportRead.model_validate(outcome).model_dump(mode="json"),
        status_code=202,
        headers={"Retry-After": str(export_service.RETRY_AFTER_S)},
    )


@lru_cache
def target_cache() -> TargetCache:
    return TargetCache(get_settings().auth_cache_s)


def _find_target(tenant_id: str, model_id: str) -> PredictTarget:
    try:
        with get_engine().connect() as connection:
            return find_target(connection, tenant_id=tenant_id, model_id=model_id)
    except OperationalError as exc:
        raise database_unavailable() from exc


async def predict_target(model_id: str, tenant: TenantDep) -> PredictTarget:
    """The caller's model: remembered for a moment, else found in one query on a connection
    given back at once (in the thread pool). A waiting prediction holds no database
    connection and, the route being async, no thread."""
    cache = target_cache()
    found = cache.get(tenant.id, model_id)
    if found is None:
        found = await run_in_threadpool(_find_target, tenant.id, model_id)
        cache.put(tenant.id, model_id, found)
    return found


@router.post("/{model_id}/predict", response_model=PredictResponse)
async def predict(
    request: Request,
    model: Annotated[PredictTarget, Depends(predict_target)],
    settings: SettingsDep,
) -> PredictResponse:
    """Classify inputs with the model: texts as JSON `inputs`; images as multipart `files` or
    JSON `images` (base64). An inference worker batches them with other requests for the same
    base model; 504 when no answer comes within `TUNESERVE_PREDICT_TIMEOUT_S`, 413 beyond
    `TUNESERVE_PREDICT_MAX_INPUTS` inputs, `TUNESERVE_PREDICT_MAX_TOKENS` tokens or the image
    limits (`TUNESERVE_PREDICT_MAX_IMAGES`, `_MAX_IMAGE_BYTES`, `_MAX_IMAGE_PIXELS`)."""
    body = await read_predict_body(request, settings)
    predictions = await service.predict(
        model, tenant_id=model.tenant_id, body=body, settings=settings
    )
    return PredictResponse(
        model_id=model.id, predictions=[Prediction.model_validate(p) for p in predictions]
    )
