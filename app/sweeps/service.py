"""Sweeps: create the candidate jobs in one transaction, rank them, promote the winner.

A sweep is a ``Sweep`` row plus its candidate jobs (``Job.sweep_id``), all on one split. The
rows are the truth: the leaderboard is computed from the jobs whenever it is read, and
:func:`settle_sweep` finishes the sweep with one conditional UPDATE once every candidate has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.contract.hyperparameters import Hyperparameters, metric_mode
from app.db import rows_changed, utcnow
from app.errors import AppError, Conflict, NotFound
from app.idempotency import Idempotent
from app.jobs.orm import TERMINAL_STATUSES
from app.jobs.schemas import JobCreate
from app.jobs.service import cancel_job, check_selection_metric, create_job, validate_submission
from app.pagination import paginate
from app.sweeps.orm import Sweep
from app.sweeps.ranking import Candidate, jobs_of, models_of, rank
from app.sweeps.schemas import LeaderboardEntry, SweepCreate, SweepRead
from app.webhooks.events import record_sweep_event

# --- create -----------------------------------------------------------------------------


def shared_hyperparameters(body: SweepCreate) -> Hyperparameters:
    """The hyperparameters every candidate shares: unless the caller set ``early_stopping``,
    each candidate selects its served checkpoint by the sweep's metric."""
    hp = body.hyperparameters
    if "early_stopping" in hp.model_fields_set:
        return hp
    return hp.model_copy(
        update={"early_stopping": hp.early_stopping.model_copy(update={"metric": body.metric})}
    )


def candidate_bodies(body: SweepCreate, shared: Hyperparameters) -> list[JobCreate]:
    """One job per strategy x learning rate, in request order, all on the same split."""
    rates: list[float | None] = [None] if body.learning_rates is None else [*body.learning_rates]
    return [
        JobCreate(
            base_model=body.base_model,
            dataset_id=body.dataset_id,
            validation_dataset_id=body.validation_dataset_id,
            test_dataset_id=body.test_dataset_id,
            strategy=strategy,
            hyperparameters=shared
            if rate is None
            else shared.model_copy(update={"learning_rate": rate}),
        )
        for strategy in body.strategies
        for rate in rates
    ]


@contextmanager
def _as_candidate(index: int) -> Iterator[None]:
    """Name the candidate in the details of an error raised for it."""
    try:
        yield
    except AppError as exc:
        if exc.details is None or isinstance(exc.details, dict):
            exc.details = {**(exc.details or {}), "candidate": index}
        raise


def create_sweep(
    session: Session,
    *,
    tenant_id: str,
    body: SweepCreate,
    settings: Settings,
    idempotency_key: str | None,
) -> tuple[Sweep, bool]:
    """Create the sweep and every candidate job (queued; sent after commit), or nothing.

    Returns (sweep, created). Does not commit: the caller does, and the train messages go out
    after that commit. A candidate that fails validation raises its error with
    ``details.candidate`` set to its index, and the caller's rollback drops everything."""
    shared = shared_hyperparameters(body)
    request = body.model_copy(update={"hyperparameters": shared}).model_dump(mode="json")
    keyed = Idempotent(
        Sweep,
        tenant_id=tenant_id,
        key=idempotency_key,
        same_request=lambda existing: _canonical(existing.request) == _canonical(request),
        id_field="sweep_id",
    )
    replayed = keyed.replay(session)
    if replayed is not None:
        return replayed, False
    # every candidate is validated first (with the caller's own early_stopping), so that the
    # sweep row never points at a dataset that is not there, and a wrong metric is named as
    # the sweep's `metric`; the sweep's metric is then checked once
    submissions = []
    for index, job_body in enumerate(candidate_bodies(body, body.hyperparameters)):
        with _as_candidate(index):
            submissions.append(
                validate_submission(session, tenant_id=tenant_id, body=job_body, settings=settings)
            )
    check_selection_metric(body.metric, submissions[0].dataset.task, field="metric")

    sweep = Sweep(
        tenant_id=tenant_id,
        status="running",
        base_model=body.base_model,
        dataset_id=body.dataset_id,
        validation_dataset_id=body.validation_dataset_id,
        test_dataset_id=body.test_dataset_id,
        metric=body.metric,
        mode=metric_mode(body.metric),
        request=request,
        idempotency_key=idempotency_key,
    )
    winner = keyed.insert(session, sweep)  # a concurrent retry with the same key won the race
    if winner is not None:
        return winner, False
    # the candidates as validated above: only early_stopping.metric differs, now the sweep's
    for index, (job_body, submission) in enumerate(
        zip(candidate_bodies(body, shared), submissions, strict=True)
    ):
        with _as_candidate(index):
            create_job(
                session,
                tenant_id=tenant_id,
                body=job_body,
                settings=settings,
                idempotency_key=None,
                sweep_id=sweep.id,
                submission=submission,
            )
    return sweep, True


def _canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True)


# --- read, cancel -----------------------------------------------------------------------


def get_sweep(session: Session, *, tenant_id: str, sweep_id: str) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.tenant_id != tenant_id:
        raise NotFound(f"Sweep {sweep_id!r} not found.")
    return sweep


def list_sweeps(
    session: Session, *, tenant_id: str, status: str | None, cursor: str | None, limit: int
) -> list[Sweep]:
    stmt = select(Sweep).where(Sweep.tenant_id == tenant_id)
    if status:
        stmt = stmt.where(Sweep.status == status)
    stmt = paginate(stmt, created_col=Sweep.created_at, id_col=Sweep.id, cursor=cursor, limit=limit)
    return list(session.scalars(stmt))


def cancel_sweep(session: Session, *, tenant_id: str, sweep_id: str) -> Sweep:
    """Cancel the sweep (no promotion) and every unfinished candidate: queued ones at once,
    running ones through their cancel flag. A finished sweep is a 409 ``sweep_finished``."""
    sweep = get_sweep(session, tenant_id=tenant_id, sweep_id=sweep_id)
    settle_sweep(session, sweep.id)  # all candidates done already: it finished, not cancelled
    now = utcnow()
    done = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep.id, Sweep.status == "running")
        .values(status="cancelled", finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(sweep)
    if not rows_changed(done):
        raise Conflict(
            f"Sweep {sweep.id!r} already {sweep.status}; it cannot be cancelled.",
            code="sweep_finished",
            details={"status": sweep.status},
        )
    record_sweep_event(session, sweep.id)  # webhooks, in this transaction
    for job in jobs_of(session, [sweep.id]).get(sweep.id, []):
        if job.status in TERMINAL_STATUSES:
            continue
        try:
            cancel_job(session, tenant_id=tenant_id, job_id=job.id)
        except Conflict as exc:  # it finished in the meantime
            if exc.code != "job_finished":
                raise
    return sweep


# --- promotion --------------------------------------------------------------------------


def _settle(session: Session, sweep: Sweep, ranked: list[Candidate]) -> None:
    if sweep.status != "running" or any(c.job.status not in TERMINAL_STATUSES for c in ranked):
        return
    winner = ranked[0] if ranked and ranked[0].rank == 1 else None
    now = utcnow()
    settled = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep.id, Sweep.status == "running")
        .values(
            status="succeeded" if winner else "failed",
            winner_job_id=winner.job.id if winner else None,
            model_id=winner.job.model_id if winner else None,
            finished_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if rows_changed(settled):
        record_sweep_event(session, sweep.id)  # webhooks, in this transaction
    session.refresh(sweep)  # whoever won the UPDATE, this is what the row says now


def settle_sweep(session: Session, sweep_id: str) -> Sweep | None:
    """Finish a ``running`` sweep whose candidates have all finished; None if there is none.

    The best succeeded candidate by the sweep's metric (ties: shorter wall time) wins: the
    sweep becomes ``succeeded`` with its ``winner_job_id`` and ``model_id``; with no such
    candidate it becomes ``failed``. One conditional UPDATE (``WHERE status = 'running'``)
    does it, so two settlers never both promote, and settling again changes nothing.

    For the worker, after each candidate job ends, and for readers. Flushes, never commits:
    the caller commits."""
    sweep = session.get(Sweep, sweep_id, populate_existing=True)
    if sweep is None or sweep.status != "running":
        return sweep
    jobs = jobs_of(session, [sweep.id])[sweep.id]
    _settle(session, sweep, rank(jobs, models_of(session, jobs), sweep.metric, sweep.mode))
    return sweep


def describe(session: Session, sweeps: Sequence[Sweep]) -> list[SweepRead]:
    """Settle the running sweeps among ``sweeps`` (lazily), then read them with leaderboards."""
    jobs_by_sweep = jobs_of(session, [s.id for s in sweeps])
    models = models_of(session, [j for jobs in jobs_by_sweep.values() for j in jobs])
    reads = []
    for sweep in sweeps:
        ranked = rank(jobs_by_sweep[sweep.id], models, sweep.metric, sweep.mode)
        _settle(session, sweep, ranked)
        board = [
            LeaderboardEntry.from_job(
                c.job, rank=c.rank, value=c.value, wall_seconds=c.wall_seconds, model=c.model
            )
            for c in ranked
        ]
        reads.append(SweepRead.from_row(sweep, board))
    return reads
