"""The Celery application of the workers: queues ``train`` and ``infer``.

Nothing here imports torch: the tasks import their implementation when they run, in the
worker's child process, so CUDA is never initialised in a parent before it forks.
Settings and the reasons for them: docs/operations.md.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import get_settings
from app.tasks import INFER_QUEUE, TRAIN_QUEUE, celery_config

celery_app = Celery("tuneserve")
celery_app.conf.update(celery_config(get_settings().celery_broker_url))
celery_app.conf.update(
    task_queues=(Queue(TRAIN_QUEUE), Queue(INFER_QUEUE)),
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
)

import worker.tasks.inference  # noqa: E402  register the tasks
import worker.tasks.training  # noqa: E402,F401

app = celery_app
