from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.datasets import service
from app.datasets.preview import preview
from app.datasets.schemas import DatasetList, DatasetPreview, DatasetRead, LabelPage
from app.datasets.upload import receive_upload
from app.datasets.views import dataset_read, label_page
from app.deps import SessionDep, SettingsDep, StorageDep, TenantDep
from app.errors import AppError
from app.limits import quotas
from app.pagination import page

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_DOC = """Upload a dataset as `multipart/form-data`.

Fields: `file` (CSV, JSONL or Parquet; a zip for images), `task` (`text-classification`
(default), `text-multilabel`, `text-pair-classification`, `unlabeled-text`,
`image-classification`, `image-multilabel`), `name`, and the column
mapping `text_column` (default `text`), `label_column` (`label`), `text_pair_column`
(`text_pair`); optional `format` (`csv`, `jsonl`, `parquet`) when the file name does not say.
The upload is streamed to disk under the byte cap (413 above it), validated, and stored as
canonical Parquet. A fatal problem gives 422 `dataset_invalid` with the validation report in
`details`; a passed cap (decoded bytes, a cell, rows, columns, labels; docs/datasets.md) gives
413 or 422 with its own code (`dataset_too_large`, `cell_too_large`, `row_too_large`,
`too_many_rows`, `too_many_columns`, `too_many_labels`, `label_too_long`). Nothing is stored
then.

`image-classification` and `image-multilabel` take a zip: class folders (`cat/001.png`), or
images with a `labels.csv` / `labels.jsonl` at the root (`image_column`, default `image`;
`label_column`, default `label`, or `labels` for multi-label). Every image is decoded and stored
as a shrunk RGB PNG; a hostile zip (path traversal, links, too many members, sizes or a
compression ratio past the caps, nested archives, decompression bombs, a file that is not what
its extension says) gets its own 413 or 422 code (docs/datasets.md, "Image datasets")."""


@router.post("", status_code=201, response_model=DatasetRead, description=UPLOAD_DOC)
async def upload_dataset(
    request: Request,
    tenant: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> DatasetRead:
    # quotas: a full tenant is refused before the body is read (the connection is given back
    # while it streams), and checked again, locked, with the bytes received
    await run_in_threadpool(
        quotas.check_dataset_room, session, tenant_id=tenant.id, settings=settings
    )
    await run_in_threadpool(session.rollback)
    upload = await receive_upload(
        content_type=request.headers.get("content-type"),
        content_length=request.headers.get("content-length"),
        stream=request.stream(),
        dest=storage.new_upload_path(),
        cap=settings.max_upload_bytes,
    )
    try:
        await run_in_threadpool(
            quotas.reserve_dataset,
            session,
            tenant_id=tenant.id,
            settings=settings,
            incoming=upload.size,
        )
    except AppError:
        upload.path.unlink(missing_ok=True)
        raise
    dataset = await run_in_threadpool(
        service.create_dataset,
        session,
        tenant_id=tenant.id,
        upload=upload,
        settings=settings,
        storage=storage,
    )
    await run_in_threadpool(session.commit)
    return dataset_read(dataset, shown=settings.dataset_labels_shown)


@router.get("", response_model=DatasetList)
def list_datasets(
    tenant: TenantDep,
    session: SessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DatasetList:
    rows = service.list_datasets(session, tenant_id=tenant.id, cursor=cursor, limit=limit)
    rows, next_cursor = page(rows, limit)
    shown = settings.dataset_labels_shown
    return DatasetList(data=[dataset_read(r, shown=shown) for r in rows], next_cursor=next_cursor)


@router.get("/{dataset_id}", response_model=DatasetRead)
def get_dataset(
    dataset_id: str, tenant: TenantDep, session: SessionDep, settings: SettingsDep
) -> DatasetRead:
    dataset = service.get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    return dataset_read(dataset, shown=settings.dataset_labels_shown)


@router.get("/{dataset_id}/labels", response_model=LabelPage)
def list_labels(
    dataset_id: str,
    tenant: TenantDep,
    session: SessionDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LabelPage:
    """Every label of the dataset with its count, most frequent first, a page at a time."""
    dataset = service.get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    return label_page(dataset, cursor=cursor, limit=limit)


@router.get("/{dataset_id}/preview", response_model=DatasetPreview)
def preview_dataset(
    dataset_id: str,
    tenant: TenantDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> DatasetPreview:
    """The first rows (at most `limit` and TUNESERVE_PREVIEW_MAX_ROWS), each text cut to
    TUNESERVE_PREVIEW_CELL_CHARS characters; cut cells are listed in `truncated_cells`."""
    dataset = service.get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    return preview(
        dataset,
        storage=storage,
        limit=min(limit, settings.preview_max_rows),
        cell_chars=settings.preview_cell_chars,
    )


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(
    dataset_id: str, tenant: TenantDep, session: SessionDep, storage: StorageDep
) -> Response:
    dataset = service.delete_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    session.commit()
    service.remove_files(dataset, storage=storage)
    return Response(status_code=204)
