"""The reaper: every job ends ``succeeded``, ``failed`` or ``cancelled`` on its own.

Run periodically (Celery beat sends ``tuneserve.reap`` to the ``maintenance`` queue). Each pass:

1. A ``running`` job whose lease expired (its worker died, or lost the database) goes back to
   ``queued`` and is sent again while ``attempt < max_attempts``; it resumes from its last
   checkpoint. Otherwise it fails with ``worker_lost``. Both are conditional UPDATEs on the old
   lease token (``app.jobs.lifecycle.requeue_or_fail_expired``), so two reapers never act
   twice.
2. A ``queued`` job whose ``train`` message is not on its way to a worker is sent again, once
   it has been queued ``resend_after_s``: a message counts only while it waits in the queue or
   was delivered to a worker less than ``resend_after_s`` ago. A message left in Redis's
   ``unacked`` hash by a worker that died (kombu gives it back only after the 6-hour visibility
   timeout), a broker restart that lost it, or a message whose worker claimed another job by
   the fair order (it holds that message until the job ends) therefore delays a job by at most
   ``resend_after_s`` plus one reaper interval. Duplicates are harmless: every claim is a
   conditional UPDATE, and a message that finds nothing queued is acknowledged at once.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from app.config import get_settings
from app.db import db_now, rows_changed, session_scope
from app.jobs.lifecycle import Claim, requeue_or_fail_expired, resend
from app.orm import Job
from app.storage import Storage
from app.tasks import TRAIN_QUEUE
from worker.job_store import worker_prefix
from worker.sweep_settling import settle_sweeps

log = logging.getLogger(__name__)

_JOB_ID = re.compile(rb"job_[0-9a-f]{24}")
#: kombu's Redis transport: delivered, unacknowledged messages and their delivery times
_UNACKED, _UNACKED_INDEX = "unacked", "unacked_index"


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"requeued": self.requeued, "failed": self.failed, "resent": self.resent}


def jobs_in_broker(delivered_within_s: float | None = None) -> set[str] | None:
    """Job ids with a ``train`` message waiting in Redis, or delivered to a worker (kombu's
    ``unacked`` hash) less than ``delivered_within_s`` seconds ago (any time ago when None);
    None if unknown.

    kombu records each delivery's time (this worker's clock) in the ``unacked_index`` sorted
    set; an ``unacked`` entry without one, or older, is not counted.
    """
    import redis

    try:
        client = redis.Redis.from_url(get_settings().celery_broker_url, socket_timeout=5)
        found: set[str] = set()
        for key in client.scan_iter(match=f"{TRAIN_QUEUE}*", count=100):
            if client.type(key) == b"list":
                for raw in client.lrange(key, 0, -1):
                    found.update(m.decode() for m in _JOB_ID.findall(_decoded(raw)))
        if delivered_within_s is None:
            held = client.hvals(_UNACKED)
        else:
            since = time.time() - delivered_within_s
            tags: list[Any] = list(client.zrangebyscore(_UNACKED_INDEX, since, "+inf"))
            held = [raw for raw in client.hmget(_UNACKED, tags) if raw] if tags else []
        for raw in held:
            found.update(m.decode() for m in _JOB_ID.findall(_decoded(raw)))
        return found
    except Exception:
        log.warning("could not inspect the broker's queues", exc_info=True)
        return None


def _decoded(raw: bytes | str) -> bytes:
    """Message bodies are base64 inside the JSON envelope; look in both."""
    import base64

    out = raw.encode() if isinstance(raw, str) else raw
    try:
        envelope = json.loads(raw)
        message = envelope[0] if isinstance(envelope, list) else envelope
        body = message.get("body", "") if isinstance(message, dict) else ""
        out += base64.b64decode(body) if body else b""
    except (ValueError, TypeError, AttributeError):
        pass
    return out


def reap_once() -> ReapReport:
    report = ReapReport()
    settings = get_settings()
    failed_sweeps: list[str] = []
    with session_scope() as s:
        now = db_now(s)
        expired = s.execute(
            select(Job.id, Job.lease_token, Job.attempt, Job.max_attempts, Job.sweep_id).where(
                Job.status == "running", Job.lease_expires_at < now, Job.lease_token.is_not(None)
            )
        ).all()
        for job_id, token, attempt, max_attempts, sweep_id in expired:
            assert token is not None  # a lease always has both its token and its expiry
            lease = Claim(job_id=job_id, token=token, attempt=attempt)
            outcome = requeue_or_fail_expired(s, lease, max_attempts=max_attempts, now=now)
            if outcome == "requeued":
                report.requeued.append(job_id)
            elif outcome == "failed":
                report.failed.append(job_id)
                if sweep_id is not None:
                    failed_sweeps.append(sweep_id)

        stale = now - timedelta(seconds=settings.resend_after_s)
        waiting = s.scalars(
            select(Job.id).where(
                Job.status == "queued",
                Job.cancel_requested.is_(False),
                (Job.enqueued_at.is_(None)) | (Job.enqueued_at < stale),
            )
        ).all()
        if waiting:
            present = jobs_in_broker(delivered_within_s=settings.resend_after_s)
            for job_id in waiting:
                if present is not None and job_id in present:
                    continue
                if resend(s, job_id, now=now):
                    report.resent.append(job_id)
    for job_id in report.failed:  # it will never resume: its checkpoints can go
        shutil.rmtree(
            Storage.from_settings(settings).path(f"checkpoints/{job_id}"), ignore_errors=True
        )
    settle_sweeps(failed_sweeps)  # after the commit: a reaped last candidate ends its sweep
    if report.requeued or report.failed or report.resent:
        log.info("reaper: %s", report.as_dict())
    return report


def request_release(main_pid: int) -> int:
    """Ask every job held by the children of worker ``main_pid`` to checkpoint and go back to
    the queue (called when that worker is told to shut down). Returns how many."""
    with session_scope() as s:
        res = s.execute(
            update(Job)
            .where(Job.status == "running", Job.worker_id.like(f"{worker_prefix(main_pid)}%"))
            .values(release_requested=True)
        )
        return rows_changed(res)
