"""The training worker's side of a job: its claim, and every write it makes under the lease.

The transitions themselves (claim, renew, release, succeed, fail, cancel) are
``app.jobs.lifecycle``'s conditional UPDATEs; here each runs in its own transaction. A write
that matches no row means the lease is lost (the job was reaped, cancelled or finished
elsewhere): the caller stops at once and writes nothing more.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import select

from app.db import session_scope, utcnow
from app.jobs import lifecycle
from app.jobs.lifecycle import Claim
from app.orm import Job, JobMetric, Model  # every table, so FKs resolve


class LeaseLost(Exception):
    """The job's lease is no longer ours; stop and write nothing."""


def worker_name() -> str:
    """``host:worker-main-pid:pid``: a Celery pool child's parent is its worker's main process,
    which is how that process finds the jobs its children hold when it shuts down."""
    return f"{socket.gethostname()}:{os.getppid()}:{os.getpid()}"


def worker_prefix(main_pid: int) -> str:
    return f"{socket.gethostname()}:{main_pid}:"


def claim(job_id: str, *, lease_seconds: int) -> Claim | None:
    """Claim ``job_id`` for this process (``lifecycle.claim``), in its own transaction."""
    with session_scope() as s:
        return lifecycle.claim(s, job_id, lease_seconds=lease_seconds, worker_id=worker_name())


def claim_next(*, lease_seconds: int) -> Claim | None:
    """Claim the fairest queued job for this process (``lifecycle.claim_next``); None when no
    job is waiting.

    A ``train`` message only says "a job is waiting": whichever job it names, the woken worker
    starts the fairest one, so N messages still start N jobs, and a burst of one tenant does not
    hold another tenant's job behind all of it.
    """
    with session_scope() as s:
        return lifecycle.claim_next(s, lease_seconds=lease_seconds, worker_id=worker_name())


def has_claimable_job() -> bool:
    """Whether any job waits to be claimed: one indexed read, no torch, run by the worker's
    main process before it pays for a pool process (worker/tasks/training.py)."""
    with session_scope() as s:
        found = s.scalar(
            select(Job.id).where(Job.status == "queued", Job.cancel_requested.is_(False)).limit(1)
        )
    return found is not None


class JobStore:
    """Fenced writes for one claimed job, each in its own transaction."""

    def __init__(self, claim: Claim, *, lease_seconds: int) -> None:
        self.claim = claim
        self.lease_seconds = lease_seconds

    def renew_lease(self) -> None:
        """Push the lease's expiry forward (by the database's clock). Raises LeaseLost."""
        with session_scope() as s:
            if not lifecycle.renew(s, self.claim, lease_seconds=self.lease_seconds):
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
            return lifecycle.release(s, self.claim, message=message, data=data)

    def write_progress(
        self,
        *,
        progress: dict[str, Any],
        metrics: dict[str, Any] | None = None,
        points: Sequence[tuple[str, float, int, dict[str, float]]] = (),
        events: Sequence[tuple[str, str, dict[str, Any] | None]] = (),
    ) -> None:
        values: dict[str, Any] = {"progress": progress}
        if metrics is not None:
            values["metrics"] = metrics
        self._write(values, points=points, events=events)

    def event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.write_progress_events([(kind, message, data)])

    def write_progress_events(self, events: list[tuple[str, str, dict[str, Any] | None]]) -> None:
        self._write({}, events=events)

    def _write(
        self,
        values: dict[str, Any],
        *,
        points: Sequence[tuple[str, float, int, dict[str, float]]] = (),
        events: Sequence[tuple[str, str, dict[str, Any] | None]] = (),
    ) -> None:
        """One fenced write of ``values`` (and ``updated_at``) with its metric points and
        events, in one transaction. Raises LeaseLost."""
        with session_scope() as s:
            if not lifecycle.write(s, self.claim, updated_at=utcnow(), **values):
                raise LeaseLost(self.claim.job_id)
            for split, epoch, step, vals in points:
                s.add(
                    JobMetric(
                        job_id=self.claim.job_id, split=split, epoch=epoch, step=step, values=vals
                    )
                )
            for kind, message, data in events:
                lifecycle.add_event(s, self.claim.job_id, kind, message, data)

    def succeed(
        self,
        *,
        model: Model,
        metrics: dict[str, Any],
        progress: dict[str, Any],
        selection: dict[str, Any] | None = None,
    ) -> None:
        """Register the model and finish the job in one transaction, or neither."""
        with session_scope() as s:
            done = lifecycle.succeed(
                s, self.claim, model=model, metrics=metrics, progress=progress, selection=selection
            )
            if not done:
                raise LeaseLost(self.claim.job_id)

    def finish(
        self,
        *,
        status: Literal["failed", "cancelled"],
        code: str | None,
        message: str,
        data: dict[str, Any] | None = None,
    ) -> bool:
        """End the job ``failed`` or ``cancelled``; False when the lease was already lost."""
        with session_scope() as s:
            return lifecycle.finish(
                s, self.claim, status=status, code=code, message=message, data=data
            )
