"""Which queued job a woken worker starts: the fair order across tenants."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from app.jobs.orm import Job


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
