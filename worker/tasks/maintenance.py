from __future__ import annotations

from typing import Any

from app.tasks import REAP_TASK
from worker.celery_app import celery_app


@celery_app.task(name=REAP_TASK, acks_late=False, ignore_result=True, expires=60)
def reap() -> dict[str, Any]:
    """Requeue or fail jobs with expired leases; re-send lost messages."""
    from worker.maintenance import reap_once

    return reap_once().as_dict()
