from __future__ import annotations

from typing import Any

from app.tasks import PREDICT_TASK
from worker.celery_app import celery_app


@celery_app.task(name=PREDICT_TASK, acks_late=False, soft_time_limit=120, time_limit=150)
def predict(model_id: str, storage_path: str, inputs: list[Any], top_k: int) -> list[dict]:
    """Answer one predict request with a cached, loaded model."""
    from worker.serving.inference import predict as run_predict

    return run_predict(model_id=model_id, storage_path=storage_path, inputs=inputs, top_k=top_k)
