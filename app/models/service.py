"""Fine-tuned models: read, delete, and predict through the ``infer`` queue."""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.errors import (
    AppError,
    GatewayTimeout,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from app.models.orm import Model
from app.models.schemas import PredictRequest
from app.pagination import paginate
from app.storage import Storage
from app.tasks import PREDICT_TASK, producer, send_task

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 100_000


def get_model(session: Session, *, tenant_id: str, model_id: str) -> Model:
    model = session.get(Model, model_id)
    if model is None or model.tenant_id != tenant_id or model.deleted_at is not None:
        raise NotFound(f"Model {model_id!r} not found.")
    return model


def list_models(session: Session, *, tenant_id: str, cursor: str | None, limit: int) -> list[Model]:
    stmt = select(Model).where(Model.tenant_id == tenant_id, Model.deleted_at.is_(None))
    stmt = paginate(stmt, created_col=Model.created_at, id_col=Model.id, cursor=cursor, limit=limit)
    return list(session.scalars(stmt))


def delete_model(session: Session, *, tenant_id: str, model_id: str) -> Model:
    model = get_model(session, tenant_id=tenant_id, model_id=model_id)
    model.deleted_at = utcnow()
    session.flush()
    return model


def remove_files(model: Model, *, storage: Storage) -> None:
    try:
        storage.remove(model.storage_path)
    except OSError:
        log.exception("could not remove files of model %s", model.id)


def _check_inputs(model: Model, body: PredictRequest, settings: Settings) -> list[Any]:
    if len(body.inputs) > settings.predict_max_inputs:
        raise PayloadTooLarge(
            f"{len(body.inputs)} inputs in one request; at most {settings.predict_max_inputs}.",
            code="too_many_inputs",
            details={"max_inputs": settings.predict_max_inputs},
        )
    pair = model.task == "text-pair-classification"
    for i, item in enumerate(body.inputs):
        texts = [item] if isinstance(item, str) else item
        if pair != (isinstance(item, list)) or (pair and len(texts) != 2):
            shape = "[text, text_pair]" if pair else "a string"
            raise InvalidInput(
                f"inputs[{i}]: this {model.task} model takes {shape} per input.",
                details={"field": f"inputs.{i}"},
            )
        if any(len(t) > MAX_INPUT_CHARS for t in texts):
            raise InvalidInput(
                f"inputs[{i}] is longer than {MAX_INPUT_CHARS} characters.",
                details={"field": f"inputs.{i}"},
            )
    return list(body.inputs)


def predict(model: Model, *, body: PredictRequest, settings: Settings) -> list[dict[str, Any]]:
    """Send the request to the ``infer`` queue and wait for the worker's answer."""
    inputs = _check_inputs(model, body, settings)
    timeout = settings.predict_timeout_s
    try:
        result = send_task(
            PREDICT_TASK,
            [model.id, model.storage_path, inputs, min(body.top_k, len(model.labels))],
            expires=timeout,
        )
    except Exception as exc:
        producer.cache_clear()  # a fresh producer (and result backend) for the next request
        raise ServiceUnavailable(
            "The inference queue (Redis) is unavailable; try again shortly.",
            code="queue_unavailable",
        ) from exc
    try:
        predictions: list[dict[str, Any]] = result.get(timeout=timeout, propagate=True)
    except CeleryTimeout as exc:
        result.revoke()
        raise GatewayTimeout(
            f"The prediction did not finish within {timeout:g} s; an inference worker may be "
            "busy or not running. Try again, or send fewer inputs.",
            details={"timeout_seconds": timeout},
        ) from exc
    except (ConnectionError, OSError, RedisError) as exc:
        producer.cache_clear()
        raise ServiceUnavailable(
            "The inference queue (Redis) went away while waiting; try again shortly.",
            code="queue_unavailable",
        ) from exc
    except Exception as exc:
        log.exception("prediction for model %s failed", model.id)
        raise AppError(f"The prediction failed: {exc}", code="prediction_failed") from exc
    finally:
        result.forget()
    return predictions
