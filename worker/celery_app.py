"""The Celery application of the workers: queues ``train`` (jobs, and the exports that need
torch) and ``maintenance``.

Predictions do not go through Celery: the inference worker (``python -m worker.serving``)
reads its own fair queue in Redis (docs/serving.md).

Nothing here imports torch: the tasks import their implementation when they run, in the
worker's child process, so CUDA is never initialised in a parent before it forks. A ``train``
message reaches a child only when some job is queued: the main process checks first
(worker/tasks/training.py), so a cancelled or finished job's message costs no process start.
Settings and the reasons for them: docs/operations.md.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals
from kombu import Queue

from app.config import get_settings
from app.tasks import (
    MAINTENANCE_QUEUE,
    REAP_TASK,
    TRAIN_QUEUE,
    WEBHOOK_SWEEP_TASK,
    celery_config,
)

log = logging.getLogger(__name__)

#: the task modules, imported by the worker (and beat) when it starts; named, not imported
#: here, since they import this module for ``celery_app.task`` (no import cycle)
TASK_MODULES = (
    "worker.tasks.export",
    "worker.tasks.maintenance",
    "worker.tasks.training",
    "worker.tasks.webhooks",
)

celery_app = Celery("tuneserve", include=list(TASK_MODULES))
celery_app.conf.update(celery_config(get_settings().celery_broker_url))
celery_app.conf.update(
    task_queues=(Queue(TRAIN_QUEUE), Queue(MAINTENANCE_QUEUE)),
    task_default_queue=TRAIN_QUEUE,
    # one long job per worker process; never reserve a second one while training
    worker_prefetch_multiplier=1,
    # ack after the task returns: a message is never lost between receipt and the job's claim;
    # a redelivered message is harmless because the claim is a conditional UPDATE on the row
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_track_started=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry=True,
    broker_connection_max_retries=None,
    beat_schedule={
        "reap": {
            "task": REAP_TASK,
            "schedule": get_settings().reaper_interval_s,
            "options": {"queue": MAINTENANCE_QUEUE, "expires": 60},
        },
        # webhook deliveries that are due: retries, and those whose message was lost
        "webhooks": {
            "task": WEBHOOK_SWEEP_TASK,
            "schedule": get_settings().webhook_sweep_interval_s,
            "options": {"queue": MAINTENANCE_QUEUE, "expires": 60},
        },
    },
)


@signals.worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    """A pool child must not share the parent's database connections."""
    from app.db import get_engine

    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)


@signals.worker_shutting_down.connect
def _release_jobs_on_shutdown(**_: Any) -> None:
    """SIGTERM (warm shutdown): ask this worker's running jobs to checkpoint and go back to
    the queue at their next step, instead of holding the shutdown for hours."""
    try:
        from worker.maintenance import request_release

        count = request_release(os.getpid())
        if count:
            log.warning("shutting down: asked %d running job(s) to release", count)
    except Exception:
        log.exception("could not ask running jobs to release")


app = celery_app
