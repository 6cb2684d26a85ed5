"""Every state change of an export row: one conditional UPDATE each.

``queued → running → ready | failed``. The API inserts a ``queued`` row and sends
``tuneserve.export(export_id)`` after the commit; a worker claims the row (``WHERE status =
'queued'``, with a fresh lease token), renews its lease while it builds, and finishes it
(``WHERE lease_token = :token AND status = 'running'``): so a redelivered or duplicated message
claims nothing, and a worker whose lease was taken can no longer finish the row. No reaper
is needed: the GET that asks for the export repairs the row first (:func:`revive`): a queued
row whose message is old is sent again, a running row whose lease expired goes back to the
queue (or fails ``worker_lost`` after ``MAX_ATTEMPTS``), a failed row is tried again once its
failure is ``RETRY_FAILED_AFTER_S`` old (not an unsupported one, a 422), a ready row whose
archive vanished is built again. None of these commits: the caller's transaction does, and
messages go out after it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from app.db import db_now, rows_changed
from app.models.export_orm import ModelExport
from app.storage import Storage
from app.tasks import EXPORT_TASK, enqueue_after_commit

#: a worker renews its lease every LEASE_S / 4 seconds while it builds
LEASE_S = 120
#: a queued row's message is sent again when it is this old (a lost or dropped message)
RESEND_AFTER_S = 300
RETRY_FAILED_AFTER_S = 600
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ExportClaim:
    """A running export's lease: whoever holds its token may finish the row."""

    export_id: str
    model_id: str
    variant: str
    token: str
    attempt: int


def claim(session: Session, export_id: str) -> ExportClaim | None:
    """``queued → running`` for exactly one caller; None when it is not queued (or gone)."""
    token = uuid.uuid4().hex
    now = db_now(session)
    changed = session.execute(
        update(ModelExport)
        .where(ModelExport.id == export_id, ModelExport.status == "queued")
        .values(
            status="running",
            attempt=ModelExport.attempt + 1,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=LEASE_S),
            started_at=now,
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    if rows_changed(changed) != 1:
        return None
    row = session.execute(
        select(ModelExport.model_id, ModelExport.variant, ModelExport.attempt).where(
            ModelExport.id == export_id
        )
    ).one()
    return ExportClaim(export_id, row.model_id, row.variant, token, row.attempt)


def _held(lease: ExportClaim) -> ColumnElement[bool]:
    return (
        (ModelExport.id == lease.export_id)
        & (ModelExport.lease_token == lease.token)
        & (ModelExport.status == "running")
    )


def _write(session: Session, which: ColumnElement[bool], **values: Any) -> bool:
    stmt = update(ModelExport).where(which).values(**values)
    return rows_changed(session.execute(stmt.execution_options(synchronize_session=False))) == 1


def renew(session: Session, lease: ExportClaim) -> bool:
    """Push the lease's expiry forward; False when the lease is no longer ``lease``'s."""
    expires = db_now(session) + timedelta(seconds=LEASE_S)
    return _write(session, _held(lease), lease_expires_at=expires)


def finish_ready(session: Session, lease: ExportClaim, *, archive_path: str, size: int) -> bool:
    """``running → ready`` by the lease holder; False when it lost the row (then the archive
    it wrote is nobody's: the caller removes it)."""
    return _write(
        session,
        _held(lease),
        status="ready",
        archive_path=archive_path,
        size_bytes=size,
        lease_token=None,
        lease_expires_at=None,
        finished_at=db_now(session),
    )


def finish_failed(session: Session, lease: ExportClaim, *, error: dict[str, Any]) -> bool:
    """``running → failed`` with ``error`` (``code``, ``message``, ``status``)."""
    return _write(
        session,
        _held(lease),
        status="failed",
        error=error,
        lease_token=None,
        lease_expires_at=None,
        finished_at=db_now(session),
    )


def _requeue(session: Session, row: ModelExport, which: ColumnElement[bool], **extra: Any) -> bool:
    now = db_now(session)
    values: dict[str, Any] = {
        "status": "queued",
        "lease_token": None,
        "lease_expires_at": None,
        "sent_at": now,
        **extra,
    }
    if not _write(session, (ModelExport.id == row.id) & which, **values):
        return False
    enqueue_after_commit(session, EXPORT_TASK, [row.id])
    return True


def revive(session: Session, row: ModelExport, *, storage: Storage) -> bool:
    """Repair ``row`` as the module says; True when it changed (the caller re-reads it)."""
    now = db_now(session)
    if row.status == "queued":
        return _requeue(
            session,
            row,
            (ModelExport.status == "queued")
            & (ModelExport.sent_at < now - timedelta(seconds=RESEND_AFTER_S)),
        )
    if row.status == "running":
        expired = (ModelExport.status == "running") & (ModelExport.lease_expires_at < now)
        if row.attempt < MAX_ATTEMPTS:
            return _requeue(session, row, expired)
        error = {
            "code": "worker_lost",
            "message": f"The worker building this export stopped {row.attempt} times.",
            "status": 409,
        }
        values = {"status": "failed", "error": error, "lease_token": None, "finished_at": now}
        return _write(session, (ModelExport.id == row.id) & expired, **values)
    if row.status == "failed":
        if (row.error or {}).get("status") == 422:
            return False  # unsupported stays unsupported
        old = now - timedelta(seconds=RETRY_FAILED_AFTER_S)
        which = (ModelExport.status == "failed") & (ModelExport.finished_at < old)
        return _requeue(session, row, which, attempt=0, error=None, finished_at=None)
    if row.archive_path is None or not storage.path(row.archive_path).is_file():
        ready = (ModelExport.status == "ready") & (ModelExport.archive_path == row.archive_path)
        return _requeue(session, row, ready, attempt=0, archive_path=None, finished_at=None)
    return False
