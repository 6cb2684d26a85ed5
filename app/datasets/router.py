from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.datasets import service
from app.datasets.schemas import DatasetList, DatasetPreview, DatasetRead
from app.datasets.upload import receive_upload
from app.deps import SessionDep, SettingsDep, StorageDep, TenantDep
from app.pagination import page

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_DOC = """Upload a dataset as `multipart/form-data`.

Fields: `file` (CSV, JSONL or Parquet), `task` (`text-classification` (default),
`text-multilabel`, `text-pair-classification`, `unlabeled-text`), `name`, and the column
mapping `text_column` (default `text`), `label_column` (`label`), `text_pair_column`
(`text_pair`); optional `format` (`csv`, `jsonl`, `parquet`) when the file name does not say.
The upload is streamed to disk under the byte cap (413 above it), validated, and stored as
canonical Parquet. A fatal problem gives 422 `dataset_invalid` with the validation report in
`details`; nothing is stored then."""


@router.post("", status_code=201, response_model=DatasetRead, description=UPLOAD_DOC)
async def upload_dataset(
    request: Request,
    tenant: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> DatasetRead:
    upload = await receive_upload(
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
        stream=request.stream(),
        dest=storage.new_upload_path(),
        cap=settings.max_upload_bytes,
    )
    dataset = await run_in_threadpool(
        service.create_dataset,
        session,
        tenant_id=tenant.id,
        upload=upload,
        settings=settings,
        storage=storage,
    )
    await run_in_threadpool(session.commit)
    return DatasetRead.model_validate(dataset)


@router.get("", response_model=DatasetList)
def list_datasets(
    tenant: TenantDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DatasetList:
    rows = service.list_datasets(session, tenant_id=tenant.id, cursor=cursor, limit=limit)
    rows, next_cursor = page(rows, limit)
    return DatasetList(data=[DatasetRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{dataset_id}", response_model=DatasetRead)
def get_dataset(dataset_id: str, tenant: TenantDep, session: SessionDep) -> DatasetRead:
    return DatasetRead.model_validate(
        service.get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    )


@router.get("/{dataset_id}/preview", response_model=DatasetPreview)
def preview_dataset(
    dataset_id: str,
    tenant: TenantDep,
    session: SessionDep,
    storage: StorageDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DatasetPreview:
    dataset = service.get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    columns, rows = service.preview(dataset, storage=storage, limit=limit)
    return DatasetPreview(id=dataset.id, columns=columns, rows=rows, total_rows=dataset.num_rows)


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(
    dataset_id: str, tenant: TenantDep, session: SessionDep, storage: StorageDep
) -> Response:
    dataset = service.delete_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    session.commit()
    service.remove_files(dataset, storage=storage)
    return Response(status_code=204)
