"""The ``train`` task, and the check its messages pass in the worker's main process.

A training worker runs each job in a fresh pool process (``--max-tasks-per-child 1``: all the
memory a job took goes back when it ends), and that process pays seconds to start and import
the runner. A message whose job was cancelled or already finished must not pay that: the
worker's main process first reads the database (one indexed query, no torch) and, when no job
waits to be claimed, acknowledges the message without handing it to the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from app.tasks import TRAIN_TASK
from worker.celery_app import celery_app

log = logging.getLogger(__name__)


def skip_when_nothing_is_queued(
    task: Any, app: Any, consumer: Any, **kwargs: Any
) -> Callable[..., Any]:
    """Celery's default execution strategy (``Task.Strategy``) for ``train``, behind a check.

    The returned handler runs in the worker's main process for every message received. When
    no job is ``queued`` (the message's job was cancelled, finished, or claimed through another
    message) it acknowledges the message and returns: no pool process starts. Otherwise, or
    when the database cannot be read, Celery handles the message as usual; the pool process
    then claims the fairest queued job (worker/runner.py), conditionally, so a message that
    passes this check by a race is still a no-op.
    """
    from celery.worker.strategy import default

    from worker.job_store import has_claimable_job

    handle = default(task, app, consumer, **kwargs)
    connection_errors = consumer.connection_errors

    def on_message(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
    ) -> Any:
        try:
            waiting = has_claimable_job()
        except Exception:  # the pool process will find out, and report, what is wrong
            log.warning("could not check the queue before starting a job", exc_info=True)
            waiting = True
        if not waiting:
            ack(log, connection_errors)
            log.info(
                "train message %s: no queued job; acknowledged without a pool process",
                message.headers.get("argsrepr", ""),
            )
            return None
        return handle(message, body, ack, reject, callbacks, **kw)

    return on_message


@celery_app.task(
    name=TRAIN_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    Strategy="worker.tasks.training:skip_when_nothing_is_queued",
)
def train(job_id: str) -> None:
    """Woken by ``job_id``'s message; the runner claims the fairest queued job or does nothing."""
    from worker.runner import run

    run(job_id)
