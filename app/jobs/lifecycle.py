"""Every state transition of a job: one conditional UPDATE and, when it matched, its event.

``queued → running → succeeded | failed | cancelled``; terminal states never change. The row
is the truth, and each function here changes it only ``WHERE`` the job is in the state the
transition starts from, so two callers racing for one transition never both make it, and a
caller that lost (a redelivered message, a second reaper, a worker whose lease was taken) makes
no change and writes no event. Each returns whether it changed the row; none commits: the
caller's transaction does, and a ``train`` message is sent only after that commit.

A claim sets a fresh lease token; every later write by the worker holding the job is fenced
``WHERE lease_token = :token AND status = 'running'`` (:func:`write`), so a worker whose lease
expired and was reaped can no longer renew, progress, succeed or fail the job.

Called by the API (:func:`cancel`), the training worker (claim to finish, ``worker/job_store``)
and the reaper (:func:`requeue_or_fail_expired`, :func:`resend`, ``worker/maintenance``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Update, select, update
from sqlalchemy.orm import Session

from app.db import db_now, rows_changed, utcnow
from app.jobs.fair_order import next_job
from app.jobs.orm import Job, JobEvent
from app.models.orm import Model
from app.tasks import TRAIN_TASK, enqueue_after_commit
from app.webhooks.events import record_job_event


@dataclass(frozen=True)
class Claim:
    """A running job's lease: whoever holds its token may write to the job."""

    job_id: str
    token: str
    attempt: int


def add_event(
    session: Session, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None
) -> None:
    session.add(JobEvent(job_id=job_id, kind=kind, message=message, data=data))


# --- the worker: claim, renew, release, succeed, fail or cancel ---------------------------


def claim(session: Session, job_id: str, *, lease_seconds: int, worker_id: str) -> Claim | None:
    """``queued → running`` of ``job_id`` for exactly one caller; None when someone else has
    it (or it is not queued, or no such job)."""
    return _claim(session, Job.id == job_id, lease_seconds=lease_seconds, worker_id=worker_id)


def claim_next(session: Session, *, lease_seconds: int, worker_id: str) -> Claim | None:
    """``queued → running`` of the job that is fairest to start now (``fair_order``), for
    exactly one caller; None when no job is waiting."""
    return _claim(session, Job.id == next_job(), lease_seconds=lease_seconds, worker_id=worker_id)


def _claim(
    session: Session, which: ColumnElement[bool], *, lease_seconds: int, worker_id: str
) -> Claim | None:
    token = uuid.uuid4().hex
    now = db_now(session)
    result = session.execute(
        update(Job)
        .where(which, Job.status == "queued", Job.cancel_requested.is_(False))
        .values(
            status="running",
            attempt=Job.attempt + 1,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            worker_id=worker_id,
            started_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if rows_changed(result) != 1:
        return None
    job_id, attempt = session.execute(
        select(Job.id, Job.attempt).where(Job.lease_token == token)
    ).one()
    data = {"attempt": attempt, "worker": worker_id}
    add_event(session, job_id, "started", f"Attempt {attempt} started.", data)
    return Claim(job_id=job_id, token=token, attempt=attempt)


def _fenced(lease: Claim, *, expired_before: datetime | None = None) -> Update:
    stmt = update(Job).where(
        Job.id == lease.job_id, Job.lease_token == lease.token, Job.status == "running"
    )
    return stmt if expired_before is None else stmt.where(Job.lease_expires_at < expired_before)


def write(session: Session, lease: Claim, **values: Any) -> bool:
    """A write by the lease holder that keeps the job running (progress, metrics, a touch of
    ``updated_at``); False when the lease is no longer ``lease``'s."""
    return rows_changed(session.execute(_fenced(lease).values(**values))) == 1


def renew(session: Session, lease: Claim, *, lease_seconds: int) -> bool:
    """Push the lease's expiry forward by the database's clock; False when it was lost."""
    expires = db_now(session) + timedelta(seconds=lease_seconds)
    return write(session, lease, lease_expires_at=expires)


def release(
    session: Session, lease: Claim, *, message: str, data: dict[str, Any] | None = None
) -> bool:
    """``running → queued`` by the holder (its worker is shutting down), sent again after
    commit; the attempt is not counted. False when the lease was already lost."""
    now = db_now(session)
    return _requeue(session, lease, ("released", message, data), now=now, attempt=Job.attempt - 1)


def succeed(
    session: Session,
    lease: Claim,
    *,
    model: Model,
    metrics: dict[str, Any],
    progress: dict[str, Any],
    selection: dict[str, Any] | None = None,
) -> bool:
    """``running → succeeded`` by the holder, registering ``model`` in the same transaction;
    False (and no model) when the lease was lost."""
    message, data = f"Model {model.id} registered.", {"model_id": model.id, "metrics": metrics}
    values: dict[str, Any] = {"metrics": metrics, "selection": selection, "progress": progress}
    now = utcnow()
    return _end(session, lease, "succeeded", message, data, now=now, model=model, **values)


def finish(
    session: Session,
    lease: Claim,
    *,
    status: Literal["failed", "cancelled"],
    code: str | None,
    message: str,
    data: dict[str, Any] | None = None,
) -> bool:
    """``running → failed`` (with ``code``) or ``running → cancelled`` (a cancel the holder
    honoured) by the holder; False when the lease was already lost."""
    error: dict[str, Any] = {"error_code": code, "error_message": message if code else None}
    return _end(session, lease, status, message, data, now=utcnow(), **error)


# --- the API: cancel ----------------------------------------------------------------------


def cancel(session: Session, job_id: str) -> Literal["cancelled", "cancel_requested"] | None:
    """``queued → cancelled`` at once, or, for a running job, raise its cancel flag (the
    training loop checks it every step and ends the job ``cancelled``). None when neither
    applied: the job is over, or its cancel was already requested."""
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="cancelled", finished_at=now, cancel_requested=True, updated_at=now)
    )
    if rows_changed(done):
        add_event(session, job_id, "cancelled", "Cancelled before it started.")
        record_job_event(session, job_id)  # webhooks, in this transaction
        return "cancelled"
    running = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
        .values(cancel_requested=True, updated_at=now)
    )
    if rows_changed(running):
        add_event(session, job_id, "cancel_requested", "Cancel requested; stopping.")
        return "cancel_requested"
    return None


# --- the reaper: a lost worker's job, a lost message -------------------------------------


def requeue_or_fail_expired(
    session: Session, lease: Claim, *, max_attempts: int, now: datetime
) -> Literal["requeued", "failed"] | None:
    """A job whose lease expired before ``now`` (its worker died or lost the database): back to
    ``queued`` and sent again after commit while ``attempt < max_attempts`` (it resumes from
    its last checkpoint), else ``failed`` with ``worker_lost``. None when the job is no longer
    held by ``lease``, or its lease has not expired."""
    data = {"attempt": lease.attempt, "reason": "worker_lost"}
    if lease.attempt < max_attempts:
        message = (
            f"The worker was lost (lease expired) during attempt {lease.attempt}; the job is "
            "queued again and resumes from its last checkpoint."
        )
        requeued = _requeue(session, lease, ("requeued", message, data), now=now, expired=True)
        return "requeued" if requeued else None
    message = (
        f"The worker running this job was lost {lease.attempt} times (max_attempts="
        f"{max_attempts}); it may be killing its worker (for example by running "
        "out of memory: try a smaller batch_size or max_length)."
    )
    error: dict[str, Any] = {"error_code": "worker_lost", "error_message": message}
    failed = _end(session, lease, "failed", message, data, now=now, expired=True, **error)
    return "failed" if failed else None


def resend(session: Session, job_id: str, *, now: datetime) -> bool:
    """Send a still ``queued`` job's ``train`` message again after commit (its message was
    lost); ``enqueued_at`` records when. Duplicates are harmless: claims are conditional."""
    res = session.execute(
        update(Job).where(Job.id == job_id, Job.status == "queued").values(enqueued_at=now)
    )
    if not rows_changed(res):
        return False
    enqueue_after_commit(session, TRAIN_TASK, [job_id])
    return True


# --- leaving running: back to the queue, or to a terminal status -------------------------

_Event = tuple[str, str, dict[str, Any] | None]  # kind, message, data


def _leave_running(
    session: Session,
    lease: Claim,
    status: str,
    event: _Event,
    *,
    now: datetime,
    expired: bool,
    **values: Any,
) -> bool:
    """``running → status`` while ``lease`` holds the job (when ``expired``, only if the lease
    expired before ``now``), the lease cleared, and ``event`` written."""
    stmt = _fenced(lease, expired_before=now if expired else None)
    cleared = {"lease_token": None, "lease_expires_at": None, "updated_at": now}
    if rows_changed(session.execute(stmt.values(status=status, **cleared, **values))) != 1:
        return False
    add_event(session, lease.job_id, *event)
    return True


def _requeue(
    session: Session,
    lease: Claim,
    event: _Event,
    *,
    now: datetime,
    expired: bool = False,
    **values: Any,
) -> bool:
    """Back to ``queued``, with no worker, and sent again after commit."""
    back = {"worker_id": None, "release_requested": False, "enqueued_at": now}
    if not _leave_running(
        session, lease, "queued", event, now=now, expired=expired, **back, **values
    ):
        return False
    enqueue_after_commit(session, TRAIN_TASK, [lease.job_id])
    return True


def _end(
    session: Session,
    lease: Claim,
    status: str,
    message: str,
    data: dict[str, Any] | None,
    *,
    now: datetime,
    expired: bool = False,
    model: Model | None = None,
    **values: Any,
) -> bool:
    """To the terminal ``status`` (the event's kind too), registering ``model`` with it."""
    if model is not None:
        values["model_id"] = model.id
    event = (status, message, data)
    if not _leave_running(
        session, lease, status, event, now=now, expired=expired, finished_at=now, **values
    ):
        return False
    if model is not None:
        session.add(model)
    record_job_event(session, lease.job_id)  # webhooks, in this transaction
    return True
