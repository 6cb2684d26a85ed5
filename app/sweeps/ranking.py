"""A sweep's leaderboard: its candidate jobs (and their models) read, and ranked by the
sweep's metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jobs.orm import Job
from app.models.orm import Model
from app.sweeps.schemas import selected_metrics


@dataclass
class Candidate:
    """A candidate job on the leaderboard: its model, its value of the sweep's metric, its
    wall time, and its rank (succeeded candidates with a value only)."""

    job: Job
    model: Model | None
    value: float | None
    wall_seconds: float | None
    rank: int | None = None


def rank(jobs: Sequence[Job], models: dict[str, Model], metric: str, mode: str) -> list[Candidate]:
    """Succeeded candidates by value (ties: shorter wall time), then unfinished, then failed
    and cancelled; within those, in the order they were created."""
    candidates = []
    for job in sorted(jobs, key=lambda j: (j.created_at, j.id)):
        wall = (
            (job.finished_at - job.started_at).total_seconds()
            if job.finished_at and job.started_at
            else None
        )
        value = selected_metrics(job).get(metric)
        candidates.append(Candidate(job, models.get(job.model_id or ""), value, wall))
    sign = -1.0 if mode == "max" else 1.0

    def key(c: Candidate) -> tuple[int, float, float]:
        if c.job.status == "succeeded" and c.value is not None:
            return (0, sign * c.value, c.wall_seconds if c.wall_seconds is not None else math.inf)
        group = {"succeeded": 1, "queued": 2, "running": 2}.get(c.job.status, 3)
        return (group, 0.0, 0.0)

    candidates.sort(key=key)  # stable: creation order within a group
    for position, c in enumerate(candidates, start=1):
        if c.job.status == "succeeded" and c.value is not None:
            c.rank = position
    return candidates


def jobs_of(session: Session, sweep_ids: Sequence[str]) -> dict[str, list[Job]]:
    found: dict[str, list[Job]] = {sweep_id: [] for sweep_id in sweep_ids}
    if not sweep_ids:
        return found
    stmt = (
        select(Job)
        .where(Job.sweep_id.in_(sweep_ids))
        .order_by(Job.created_at, Job.id)
        .execution_options(populate_existing=True)  # the workers change these rows
    )
    for job in session.scalars(stmt):
        found[str(job.sweep_id)].append(job)
    return found


def models_of(session: Session, jobs: Sequence[Job]) -> dict[str, Model]:
    ids = {job.model_id for job in jobs if job.model_id}
    if not ids:
        return {}
    return {m.id: m for m in session.scalars(select(Model).where(Model.id.in_(ids)))}
