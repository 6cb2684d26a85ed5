"""Dataset logic: ingest a received upload, list, read, delete (previews: :mod:`.preview`)."""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.contract.tasks import IMAGE_MULTILABEL, IMAGE_TASKS, TASKS
from app.datasets.images.ingest import ingest_zip
from app.datasets.images.layout import ImageColumns
from app.datasets.images.limits import ImageLimits
from app.datasets.images.report import ImageValidationReport
from app.datasets.ingest import ColumnMapping, ingest_file
from app.datasets.limits import IngestLimits
from app.datasets.orm import Dataset
from app.datasets.report import ValidationReport
from app.datasets.upload import ReceivedUpload
from app.db import new_id, utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.jobs.orm import Job
from app.pagination import paginate
from app.storage import Storage

log = logging.getLogger(__name__)

ACTIVE_JOB_STATUSES = ("queued", "running")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def safe_filename(name: str) -> str:
    """Keep only the last path component and harmless characters (the name is metadata only)."""
    base = re.split(r"[\\/]", name)[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")
    return base[:200] or "upload"


def create_dataset(
    session: Session,
    *,
    tenant_id: str,
    upload: ReceivedUpload,
    settings: Settings,
    storage: Storage,
) -> Dataset:
    """Validate ``upload`` into canonical Parquet and register it; the upload file is removed.
    An image task takes a zip (:mod:`app.datasets.images`), every other task a table."""
    try:
        fields = upload.fields
        task = fields.get("task", "text-classification")
        if task not in TASKS:
            raise InvalidInput(
                f"Unknown task {task!r}; one of: {', '.join(TASKS)}.",
                details={"field": "task", "allowed": list(TASKS)},
            )
        filename = safe_filename(upload.filename)
        name = _CONTROL_CHARS.sub("", fields.get("name") or filename).strip()[:200] or filename
        dataset_id = new_id("ds")
        relpath = storage.dataset_relpath(dataset_id)
        dest = storage.path(relpath)
        dest.parent.mkdir(parents=True, exist_ok=True)
        limits = IngestLimits.from_settings(settings)
        columns: ColumnMapping | ImageColumns
        report: ValidationReport | ImageValidationReport
        try:
            if task in IMAGE_TASKS:
                columns = ImageColumns(
                    image=fields.get("image_column") or "image",
                    label=fields.get("label_column")
                    or ("labels" if task == IMAGE_MULTILABEL else "label"),
                )
                report = ingest_zip(
                    upload.path,
                    filename=filename,
                    task=task,
                    columns=columns,
                    dest=dest,
                    limits=limits,
                    image_limits=ImageLimits.from_settings(settings),
                    declared_format=fields.get("format") or None,
                )
            else:
                columns = ColumnMapping(
                    text=fields.get("text_column") or "text",
                    label=fields.get("label_column") or "label",
                    text_pair=fields.get("text_pair_column") or "text_pair",
                )
                report = ingest_file(
                    upload.path,
                    filename=filename,
                    task=task,  # type: ignore[arg-type]
                    columns=columns,
                    dest=dest,
                    limits=limits,
                    declared_format=fields.get("format") or None,
                )
        except BaseException:
            _rmdir_quiet(dest.parent)
            raise
    finally:
        upload.path.unlink(missing_ok=True)

    dataset = Dataset(
        id=dataset_id,
        tenant_id=tenant_id,
        name=name,
        task=task,
        status="ready",
        format=report.format,
        filename=filename,
        size_bytes=upload.size,
        sha256=upload.sha256,
        num_rows=report.rows,
        labels=sorted(report.label_counts),
        column_mapping=columns.model_dump(),
        report=report.model_dump(mode="json"),
        storage_path=relpath,
    )
    session.add(dataset)
    try:
        session.flush()
    except BaseException:
        storage.remove(str(Path(relpath).parent))
        raise
    return dataset


def _rmdir_quiet(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def get_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != tenant_id or dataset.deleted_at is not None:
        raise NotFound(f"Dataset {dataset_id!r} not found.")
    return dataset


def list_datasets(
    session: Session, *, tenant_id: str, cursor: str | None, limit: int
) -> list[Dataset]:
    stmt = select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.deleted_at.is_(None))
    stmt = paginate(
        stmt, created_col=Dataset.created_at, id_col=Dataset.id, cursor=cursor, limit=limit
    )
    return list(session.scalars(stmt))


def delete_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> Dataset:
    """Mark the dataset deleted (409 while an unfinished job uses it); files go after commit."""
    dataset = get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id)
    active = _active_job_using(session, tenant_id=tenant_id, dataset_id=dataset.id)
    if active is not None:
        raise Conflict(
            f"Dataset {dataset_id!r} is used by job {active!r}, which has not finished; "
            "cancel it or wait.",
            code="dataset_in_use",
            details={"job_id": active},
        )
    dataset.deleted_at = utcnow()
    dataset.status = "deleted"
    session.flush()
    return dataset


def _active_job_using(session: Session, *, tenant_id: str, dataset_id: str) -> str | None:
    """An unfinished job that reads the dataset (as data, validation, test or a strategy's aux).

    A sweep's split is its candidate jobs' split, so its unfinished candidates cover it."""
    rows = session.execute(
        select(
            Job.id, Job.dataset_id, Job.validation_dataset_id, Job.test_dataset_id, Job.strategy
        ).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    for job_id, main_id, validation_id, test_id, strategy in rows:
        aux_ids = {v for k, v in (strategy or {}).items() if k.endswith("_dataset_id")}
        if dataset_id in {main_id, validation_id, test_id} | aux_ids:
            return str(job_id)
    return None


def remove_files(dataset: Dataset, *, storage: Storage) -> None:
    try:
        storage.remove(str(Path(dataset.storage_path).parent))
    except OSError:
        log.exception("could not remove files of dataset %s", dataset.id)
