"""Task names, queues, and sending tasks by name after the transaction commits.

The API never imports ``worker``: it sends tasks by name through a producer-only Celery app.
A job's row is committed first; the message only wakes a worker (it carries the id, nothing
else), so a lost or duplicated message never corrupts state.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import get_settings

log = logging.getLogger(__name__)

TRAIN_QUEUE = "train"
MAINTENANCE_QUEUE = "maintenance"
TRAIN_TASK = "tuneserve.train"
REAP_TASK = "tuneserve.reap"
#: builds an export variant that needs torch (docs/models.md, Export); served by the training
#: workers, which have torch and the accelerator
EXPORT_TASK = "tuneserve.export"
#: posts one webhook delivery (docs/webhooks.md); the sweep wakes due ones whose message was lost
WEBHOOK_DELIVER_TASK = "tuneserve.webhook_deliver"
WEBHOOK_SWEEP_TASK = "tuneserve.webhook_sweep"

_PENDING_KEY = "tuneserve_pending_tasks"


def celery_config(broker_url: str) -> dict[str, Any]:
    """Settings shared by the API's producer and the workers (see docs/operations.md)."""
    return {
        "broker_url": broker_url,
        "result_backend": broker_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": 3600,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": 6 * 3600},
        "result_backend_transport_options": {"visibility_timeout": 6 * 3600},
        "task_routes": {
            TRAIN_TASK: {"queue": TRAIN_QUEUE},
            REAP_TASK: {"queue": MAINTENANCE_QUEUE},
            WEBHOOK_DELIVER_TASK: {"queue": MAINTENANCE_QUEUE},
            WEBHOOK_SWEEP_TASK: {"queue": MAINTENANCE_QUEUE},
            EXPORT_TASK: {"queue": TRAIN_QUEUE},
        },
    }


@lru_cache
def producer() -> Celery:
    celery = Celery("tuneserve-api")
    celery.conf.update(celery_config(get_settings().celery_broker_url))
    # the API must fail fast when the broker is down (503), not retry for minutes
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }
    # the result backend (same Redis) subscribes on send: without this it retries 20 times,
    # a second apart, before a predict with Redis down can answer 503
    celery.conf.result_backend_transport_options = {
        **celery.conf.result_backend_transport_options,
        "retry_policy": {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    }
    celery.conf.broker_connection_timeout = 2.0
    celery.conf.redis_socket_connect_timeout = 2.0
    celery.conf.redis_socket_timeout = 5.0
    return celery


def send_task(name: str, args: list[Any], **options: Any) -> Any:
    return producer().send_task(name, args=args, **options)


def enqueue_after_commit(session: Session, name: str, args: list[Any], **options: Any) -> None:
    """Send ``name(*args)`` once ``session`` commits; nothing is sent on rollback."""
    session.info.setdefault(_PENDING_KEY, []).append((name, args, options))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    # SQLAlchemy dispatches after_commit for a SAVEPOINT's release too (begin_nested(): the
    # idempotency insert of every sweep candidate). Sending then would wake a worker before
    # the row is committed: its check finds no queued job and drops the message. Only the
    # outermost commit sends.
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_PENDING_KEY, [])
    for name, args, options in pending:
        try:
            send_task(name, args, **options)
        except Exception:  # the row is committed; the maintenance sweep re-sends it
            log.exception("could not send %s%s after commit", name, args)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    if session.in_nested_transaction():  # a SAVEPOINT rolled back: the outer one goes on
        return
    session.info.pop(_PENDING_KEY, None)


def broker_ping(timeout: float = 2.0) -> bool:
    """True when the broker answers (used before accepting a job and by /readyz)."""
    import redis

    try:
        client = redis.Redis.from_url(
            get_settings().celery_broker_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        return bool(client.ping())
    except Exception:
        return False
