"""Every database write a training worker makes for a job, each fenced by its lease token.

A claim is one conditional UPDATE (``queued → running``) that also sets a fresh lease token
(of the fairest queued job, :func:`claim_next`, or of a named one, :func:`claim`);
every later write carries ``WHERE lease_token = :token AND status = 'running'``. A write that
matches no row means the lease is lost (the job was reaped, cancelled or finished elsewhere):
the caller stops at once and writes nothing more.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import aliased

from app.db import db_now, rows_changed, session_scope, utcnow
from app.orm import Job, JobEvent, JobMetric, Model  # every table, so FKs resolve
from app.tasks import TRAIN_TASK, enqueue_after_commit


class LeaseLost(Exception):
    """The job's lease is no longer ours; stop and write nothing."""


@dataclass(frozen=True)
class Claim:
    job_id: str
    token: str
    attempt: int


def worker_name() -> str:
    """``host:worker-main-pid:pid``: a Celery pool child's parent is its worker's main process,
    which is how that process finds the jobs its children hold when it shuts down."""
    return f"{socket.gethostname()}:{os.getppid()}:{os.getpid()}"


def worker_prefix(main_pid: int) -> str:
    return f"{socket.gethostname()}:{main_pid}:"


def claim(job_id: str, *, lease_seconds: int) -> Claim | None:
    """``queued → running`` of ``job_id`` for exactly one caller; None when someone else has
    it (or no such job)."""
    return _claim(Job.id == job_id, lease_seconds=lease_seconds)


def claim_next(*, lease_seconds: int) -> Claim | None:
    """``queued → running`` of the job that is fairest to start now (:func:`next_job`), for
    exactly one caller; None when no job is waiting.

    A ``train`` message only says "a job is waiting": whichever job it names, the woken worker
    starts the fairest one, so N messages still start N jobs, and a burst of one tenant does not
    hold another tenant's job behind all of it.
    """
    return _claim(Job.id == next_job(), lease_seconds=lease_seconds)


def next_job() -> Any:
    """The id of the queued job to start next, as a scalar subquery for one conditional UPDATE.

    Fair across tenants: the tenant with the fewest running jobs first, then the tenant that
    started a job least recently (a tenant that never did first), then that tenant's oldest
    job. A worker that runs one job at a time therefore serves tenants in turn. On PostgreSQL
    the row is picked ``FOR UPDATE SKIP LOCKED``, so concurrent claims take different jobs
    instead of waiting on each other; SQLite runs the whole UPDATE under its one write lock.
    """
    candidate = aliased(Job, name="candidate")
    running, history = aliased(Job, name="running"), aliased(Job, name="history")
    tenant_running = (
        select(func.count())
        .select_from(running)
        .where(running.tenant_id == candidate.tenant_id, running.status == "running")
        .scalar_subquery()
    )
    tenant_last_start = (  # an index range scan on (tenant_id, started_at)
        select(history.started_at)
        .where(history.tenant_id == candidate.tenant_id, history.started_at.is_not(None))
        .order_by(history.started_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(candidate.id)
        .where(candidate.status == "queued", candidate.cancel_requested.is_(False))
        .order_by(
            tenant_running,
            tenant_last_start.asc().nulls_first(),
            candidate.created_at,
            candidate.id,
        )
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )


def has_claimable_job() -> bool:
    """Whether any job waits to be claimed: one indexed read, no torch, run by the worker's
    main process before it pays for a pool process (worker/tasks/training.py)."""
    with session_scope() as s:
        found = s.scalar(
            select(Job.id).where(Job.status == "queued", Job.cancel_requested.is_(False)).limit(1)
        )
    return found is not None


def _claim(which: Any, *, lease_seconds: int) -> Claim | None:
    token = uuid.uuid4().hex
    with session_scope() as s:
        now = db_now(s)
        result = s.execute(
            update(Job)
            .where(which, Job.status == "queued", Job.cancel_requested.is_(False))
            .values(
                status="running",
                attempt=Job.attempt + 1,
                lease_token=token,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                worker_id=worker_name(),
                started_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if rows_changed(result) != 1:
            return None
        job_id, attempt = s.execute(
            select(Job.id, Job.attempt).where(Job.lease_token == token)
        ).one()
        s.add(
            JobEvent(
                job_id=job_id,
                kind="started",
                message=f"Attempt {attempt} started.",
                data={"attempt": attempt, "worker": worker_name()},
            )
        )
    return Claim(job_id=job_id, token=token, attempt=attempt)


class JobStore:
    """Fenced writes for one claimed job."""

    def __init__(self, claim: Claim, *, lease_seconds: int) -> None:
        self.claim = claim
        self.lease_seconds = lease_seconds

    def _fenced(self) -> Any:
        return update(Job).where(
            Job.id == self.claim.job_id,
            Job.lease_token == self.claim.token,
            Job.status == "running",
        )

    def renew_lease(self) -> None:
        """Push the lease's expiry forward (by the database's clock). Raises LeaseLost."""
        with session_scope() as s:
            now = db_now(s)
            res = s.execute(
                self._fenced().values(lease_expires_at=now + timedelta(seconds=self.lease_seconds))
            )
            if rows_changed(res) != 1:
                raise LeaseLost(self.claim.job_id)

    def flags(self) -> tuple[bool, bool]:
        """(cancel requested, release requested): a read, no write. Raises LeaseLost."""
        with session_scope() as s:
            row = s.execute(
                select(
                    Job.status, Job.lease_token, Job.cancel_requested, Job.release_requested
                ).where(Job.id == self.claim.job_id)
            ).one_or_none()
        if row is None or row.status != "running" or row.lease_token != self.claim.token:
            raise LeaseLost(self.claim.job_id)
        return bool(row.cancel_requested), bool(row.release_requested)

    def release(self, *, message: str, data: dict[str, Any] | None = None) -> bool:
        """Hand the job back (``running → queued``) and send it again; the attempt is not
        counted. False when the lease was already lost."""
        with session_scope() as s:
            now = db_now(s)
            res = s.execute(
                self._fenced().values(
                    status="queued",
                    attempt=Job.attempt - 1,
                    lease_token=None,
                    lease_expires_at=None,
                    worker_id=None,
                    release_requested=False,
                    enqueued_at=now,
                    updated_at=now,
                )
            )
            if rows_changed(res) != 1:
                return False
            s.add(JobEvent(job_id=self.claim.job_id, kind="released", message=message, data=data))
            enqueue_after_commit(s, TRAIN_TASK, [self.claim.job_id])
        return True

    def write_progress(
        self,
        *,
        progress: dict[str, Any],
        metrics: dict[str, Any] | None = None,
        points: Sequence[tuple[str, float, int, dict[str, float]]] = (),
        events: Sequence[tuple[str, str, dict[str, Any] | None]] = (),
    ) -> None:
        values: dict[str, Any] = {"progress": progress, "updated_at": utcnow()}
        if metrics is not None:
            values["metrics"] = metrics
        with session_scope() as s:
            res = s.execute(self._fenced().values(**values))
            if rows_changed(res) != 1:
                raise LeaseLost(self.claim.job_id)
            for split, epoch, step, vals in points:
                s.add(
                    JobMetric(
                        job_id=self.claim.job_id, split=split, epoch=epoch, step=step, values=vals
                    )
                )
            for kind, message, data in events:
                s.add(JobEvent(job_id=self.claim.job_id, kind=kind, message=message, data=data))

    def event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.write_progress_events([(kind, message, data)])

    def write_progress_events(self, events: list[tuple[str, str, dict[str, Any] | None]]) -> None:
        with session_scope() as s:
            res = s.execute(self._fenced().values(updated_at=utcnow()))
            if rows_changed(res) != 1:
                raise LeaseLost(self.claim.job_id)
            for kind, message, data in events:
                s.add(JobEvent(job_id=self.claim.job_id, kind=kind, message=message, data=data))

    def succeed(
        self,
        *,
        model: Model,
        metrics: dict[str, Any],
        progress: dict[str, Any],
        selection: dict[str, Any] | None = None,
    ) -> None:
        """Register the model and finish the job in one transaction, or neither."""
        now = utcnow()
        with session_scope() as s:
            res = s.execute(
                self._fenced().values(
                    status="succeeded",
                    model_id=model.id,
                    metrics=metrics,
                    selection=selection,
                    progress=progress,
                    finished_at=now,
                    updated_at=now,
                    lease_token=None,
                    lease_expires_at=None,
                )
            )
            if rows_changed(res) != 1:
                raise LeaseLost(self.claim.job_id)
            s.add(model)
            s.add(
                JobEvent(
                    job_id=self.claim.job_id,
                    kind="succeeded",
                    message=f"Model {model.id} registered.",
                    data={"model_id": model.id, "metrics": metrics},
                )
            )

    def finish(
        self, *, status: str, code: str | None, message: str, data: dict[str, Any] | None = None
    ) -> bool:
        """End the job ``failed`` or ``cancelled``; False when the lease was already lost."""
        now = utcnow()
        with session_scope() as s:
            res = s.execute(
                self._fenced().values(
                    status=status,
                    error_code=code,
                    error_message=message if code else None,
                    finished_at=now,
                    updated_at=now,
                    lease_token=None,
                    lease_expires_at=None,
                )
            )
            if rows_changed(res) != 1:
                return False
            s.add(JobEvent(job_id=self.claim.job_id, kind=status, message=message, data=data))
        return True
