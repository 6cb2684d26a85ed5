"""Webhook tasks on the ``maintenance`` queue: one delivery, and the periodic sweep."""

from __future__ import annotations

from app.tasks import WEBHOOK_DELIVER_TASK, WEBHOOK_SWEEP_TASK
from worker.celery_app import celery_app


@celery_app.task(name=WEBHOOK_DELIVER_TASK, acks_late=False, ignore_result=True)
def deliver(delivery_id: str) -> str:
    """Woken by ``delivery_id``'s message: claim it (conditionally), post it, record it."""
    from worker.webhooks import deliver_once

    return deliver_once(delivery_id)


@celery_app.task(name=WEBHOOK_SWEEP_TASK, acks_late=False, ignore_result=True, expires=60)
def sweep() -> dict[str, int]:
    """Wake due webhook deliveries whose message was lost or whose retry is due."""
    from worker.webhooks import sweep_once

    return sweep_once()
