from __future__ import annotations

from app.tasks import TRAIN_TASK
from worker.celery_app import celery_app


@celery_app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train(job_id: str) -> None:
    """Wake up for ``job_id``; the runner claims the row or does nothing."""
    from worker.runner import run

    run(job_id)
