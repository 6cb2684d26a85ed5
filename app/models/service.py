"""Fine-tuned models: read, delete, and predict through the inference queue."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.contract.tasks import IMAGE_TASKS, PAIR_TASK
from app.db import utcnow
from app.errors import (
    AppError,
    GatewayTimeout,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from app.inference.gateway import QueueUnavailable, gateway
from app.inference.protocol import InferReply, InferRequest
from app.models.export_service import delete_exports, exports_relpath
from app.models.orm import Model
from app.models.predict_body import PredictBody
from app.models.targets import PredictTarget
from app.pagination import paginate
from app.storage import Storage

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
    delete_exports(session, model_id=model.id)
    session.flush()
    return model


def remove_files(model: Model, *, storage: Storage) -> None:
    """The artifact and the archives of its exports."""
    for relative in (model.storage_path, exports_relpath(model.id)):
        try:
            storage.remove(relative)
        except OSError:
            log.exception("could not remove %s of model %s", relative, model.id)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_inputs(model: PredictTarget, body: PredictBody, settings: Settings) -> list[Any]:
    images = model.task in IMAGE_TASKS
    if images != body.images:
        if images:
            message = (
                f"Model {model.id!r} classifies images: send the image files as multipart "
                "`files`, or as base64 in JSON `images`."
            )
        else:
            message = f"Model {model.id!r} classifies text: send JSON `inputs`."
        raise InvalidInput(message, code="wrong_input_kind", details={"task": model.task})
    if images:
        return body.inputs  # checked as they were read (app.models.image_inputs)
    if len(body.inputs) > settings.predict_max_inputs:
        raise PayloadTooLarge(
            f"{len(body.inputs)} inputs in one request; at most {settings.predict_max_inputs}.",
            code="too_many_inputs",
            details={"max_inputs": settings.predict_max_inputs},
        )
    pair = model.task == PAIR_TASK
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
        if not all(_is_unicode(t) for t in texts):
            raise InvalidInput(
                f"inputs[{i}] is not valid Unicode (it holds a lone surrogate escape).",
                details={"field": f"inputs.{i}"},
            )
    return list(body.inputs)


async def predict(
    model: PredictTarget, *, tenant_id: str, body: PredictBody, settings: Settings
) -> list[dict[str, Any]]:
    """Queue the request for an inference worker and await its answer (no thread is held)."""
    inputs = _check_inputs(model, body, settings)
    timeout = settings.predict_timeout_s
    request = InferRequest(
        model_id=model.id,
        storage_path=model.storage_path,
        task=model.task,
        tenant=tenant_id,
        inputs=inputs,
        top_k=min(body.top_k, len(model.labels)),
        deadline=time.time() + timeout,
        reply_to="",
    )
    try:
        channel = gateway()
        request.reply_to = channel.reply_key
        reply = await channel.call(request, timeout_s=timeout)
    except QueueUnavailable as exc:
        raise ServiceUnavailable(
            "The inference queue (Redis) is unavailable; try again shortly.",
            code="queue_unavailable",
        ) from exc
    if reply is None:
        raise GatewayTimeout(
            f"The prediction did not finish within {timeout:g} s; an inference worker may be "
            "busy or not running. Try again, or send fewer inputs.",
            details={"timeout_seconds": timeout},
        )
    if not reply.ok:
        raise _reply_error(reply)
    return list(reply.predictions or [])


_REPLY_ERRORS: dict[int, type[AppError]] = {
    413: PayloadTooLarge,
    422: InvalidInput,
    503: ServiceUnavailable,
}


def _reply_error(reply: InferReply) -> AppError:
    error_class = _REPLY_ERRORS.get(reply.status, AppError)
    code = reply.code or ("prediction_failed" if error_class is AppError else None)
    message = reply.message or "The prediction failed."
    return error_class(message, code=code, details=reply.details)
