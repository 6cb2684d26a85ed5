"""The ``export`` task: build an export variant that needs torch (a LoRA merge, a head as a
full model) for ``GET /v1/models/{id}/export``.

The message only wakes a worker: the row in ``exports`` is the truth. The task claims it
first (one conditional UPDATE, no torch imported), so a duplicated, redelivered or stale
message claims nothing and costs one query; only a claimed row imports the builder.
"""

from __future__ import annotations

from app.tasks import EXPORT_TASK
from worker.celery_app import celery_app


@celery_app.task(name=EXPORT_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def export(export_id: str) -> None:
    from app.db import session_scope
    from app.models.export_lifecycle import claim

    with session_scope() as session:
        lease = claim(session, export_id)
    if lease is None:
        return
    from worker.export import build_export

    build_export(lease)
