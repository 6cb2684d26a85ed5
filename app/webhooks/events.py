"""Recording an event: one ``webhook_deliveries`` row per subscribed endpoint, in the
transaction that ends the job or sweep, and a message to wake a worker after its commit.

Called by the functions that make a job or sweep terminal, only when their conditional UPDATE
matched (``app.jobs.lifecycle``, ``app.sweeps.service``), so an event is recorded exactly once
per terminal transition, whoever made it (the API, a training worker or the reaper). If the
transaction rolls back, the deliveries go with it and no message is sent.
"""

from __future__ import annotations

import json
import math
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import new_id, utcnow
from app.jobs.orm import Job
from app.sweeps.orm import Sweep
from app.tasks import WEBHOOK_DELIVER_TASK, enqueue_after_commit
from app.webhooks.orm import WebhookDelivery, WebhookEndpoint

#: the most metrics an event carries (numbers only, from the job's summary)
MAX_METRICS = 24
MAX_ERROR_CHARS = 1000


def metrics_summary(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The job's top-level numeric metrics (the served evaluation's), a bounded few."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[str(key)[:100]] = value
            if len(out) >= MAX_METRICS:
                break
    return out


def _iso(value: datetime | None) -> str:
    return (value or utcnow()).isoformat()


def record_job_event(session: Session, job_id: str) -> int:
    """Record ``job.<status>`` for a job that has just become terminal; how many deliveries."""
    row = session.execute(
        select(
            Job.tenant_id,
            Job.status,
            Job.model_id,
            Job.base_model,
            Job.sweep_id,
            Job.error_code,
            Job.error_message,
            Job.metrics,
            Job.finished_at,
        ).where(Job.id == job_id)
    ).one_or_none()
    if row is None:
        return 0
    error = None
    if row.error_code:
        error = {"code": row.error_code, "message": (row.error_message or "")[:MAX_ERROR_CHARS]}
    data = {
        "object": "job",
        "id": job_id,
        "status": row.status,
        "model_id": row.model_id,
        "base_model": row.base_model,
        "sweep_id": row.sweep_id,
        "error": error,
        "metrics": metrics_summary(row.metrics) if row.status == "succeeded" else {},
        "finished_at": _iso(row.finished_at),
    }
    return _record(session, row.tenant_id, f"job.{row.status}", data, row.finished_at)


def record_sweep_event(session: Session, sweep_id: str) -> int:
    """Record ``sweep.<status>`` for a sweep that has just become terminal."""
    sweep = session.execute(
        select(
            Sweep.tenant_id,
            Sweep.status,
            Sweep.model_id,
            Sweep.winner_job_id,
            Sweep.metric,
            Sweep.finished_at,
        ).where(Sweep.id == sweep_id)
    ).one_or_none()
    if sweep is None:
        return 0
    metrics: dict[str, float] = {}
    if sweep.winner_job_id:
        winner = session.scalar(select(Job.metrics).where(Job.id == sweep.winner_job_id))
        metrics = metrics_summary(winner)
    error = None
    if sweep.status == "failed":
        message = f"No candidate succeeded with a value of the sweep's metric ({sweep.metric})."
        error = {"code": "no_winner", "message": message}
    data = {
        "object": "sweep",
        "id": sweep_id,
        "status": sweep.status,
        "model_id": sweep.model_id,
        "winner_job_id": sweep.winner_job_id,
        "metric": sweep.metric,
        "error": error,
        "metrics": metrics,
        "finished_at": _iso(sweep.finished_at),
    }
    return _record(session, sweep.tenant_id, f"sweep.{sweep.status}", data, sweep.finished_at)


def _record(
    session: Session,
    tenant_id: str,
    event_type: str,
    data: dict[str, Any],
    happened_at: datetime | None,
) -> int:
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events).where(
            WebhookEndpoint.tenant_id == tenant_id
        )
    ).all()
    wanted = [endpoint_id for endpoint_id, events in endpoints if event_type in (events or ())]
    if not wanted:
        return 0
    event_id = f"evt_{secrets.token_hex(12)}"
    body = json.dumps(
        {"id": event_id, "type": event_type, "created_at": _iso(happened_at), "data": data},
        separators=(",", ":"),
    )
    now = utcnow()
    for endpoint_id in wanted:
        delivery_id = new_id("whd")
        session.add(
            WebhookDelivery(
                id=delivery_id,
                endpoint_id=endpoint_id,
                event_id=event_id,
                event_type=event_type,
                body=body,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                woken_at=now,  # the message below; the sweep wakes it again if that is lost
                created_at=now,
            )
        )
        enqueue_after_commit(session, WEBHOOK_DELIVER_TASK, [delivery_id])
    return len(wanted)
