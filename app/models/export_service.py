"""What ``GET /v1/models/{id}/export`` gives: an artifact as it is, or a built variant.

- ``full`` artifacts, ``lora`` with ``merge_lora=false`` and ``head`` without ``as_full``:
  the artifact directory itself, streamed as ``.tar.gz`` by the API (:mod:`.export_archive`).
- ``lora`` merged and ``head`` ``as_full``: built by a worker (they need torch): a row in
  ``exports`` (:mod:`.export_lifecycle`), ``202`` until its archive is ready, then the archive.
  A head becomes a full model only where the architecture's own classifier reads exactly
  the head's pooled vector (:mod:`.export_rules`); elsewhere 422 ``export_unsupported``.

The API reads only JSON here (the manifest, a ``config.json``); it never loads weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.base_models.registry import get_base_model
from app.config import Settings
from app.db import after_failed_savepoint
from app.errors import AppError, Conflict, InvalidInput
from app.models.export_archive import MANIFEST_NAME
from app.models.export_lifecycle import revive
from app.models.export_orm import ModelExport
from app.models.export_rules import HeadNotConvertible, own_head_for
from app.models.orm import Model
from app.storage import Storage
from app.tasks import EXPORT_TASK, enqueue_after_commit

#: what a client waiting on a 202 is told to wait, in seconds
RETRY_AFTER_S = 2


@dataclass(frozen=True)
class AsIs:
    """Stream ``directory`` as it is."""

    directory: Path
    filename: str


def exports_relpath(model_id: str) -> str:
    """Where a model's built archives live, relative to the storage root."""
    return f"exports/{model_id}"


def archive_filename(model_id: str, variant: str) -> str:
    return f"{model_id}-{variant}.tar.gz"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Conflict(f"The {what} cannot be read.", code="artifact_unusable") from exc
    if not isinstance(value, dict):
        raise Conflict(f"The {what} is not a JSON object.", code="artifact_unusable")
    return value


def _encoder_model_type(manifest: dict[str, Any], directory: Path, settings: Settings) -> str:
    """The ``model_type`` of the encoder a head sits on: its own ``encoder/`` or its base."""
    if manifest.get("backbone"):
        config_path = directory / str(manifest["backbone"]) / "config.json"
    else:
        base = manifest.get("base_model") or {}
        info = get_base_model(settings, str(base.get("id", "")))
        if info is not None:
            return info.model_type
        if not base.get("path"):
            raise Conflict(
                f"The base model {base.get('id')!r} of this head is not available here.",
                code="base_model_unavailable",
            )
        config_path = Path(str(base["path"])) / "config.json"
    return str(_read_json(config_path, "encoder's config.json").get("model_type", ""))


def check_head_as_full(manifest: dict[str, Any], directory: Path, settings: Settings) -> None:
    """422 ``export_unsupported`` unless the head maps exactly onto a full model."""
    pooling = str((manifest.get("head") or {}).get("pooling", ""))
    model_type = _encoder_model_type(manifest, directory, settings)
    try:
        own_head_for(model_type, pooling)
    except HeadNotConvertible as exc:
        raise InvalidInput(
            f"This model cannot be exported as a full model: {exc} Export it without "
            "`as_full` instead: the head artifact as it is (manifest.json, head.safetensors "
            "and the tokenizer or image processor; the base model named by its id).",
            code="export_unsupported",
            details={"model_type": model_type, "pooling": pooling},
        ) from exc


def plan(
    session: Session,
    model: Model,
    *,
    storage: Storage,
    settings: Settings,
    merge_lora: bool,
    as_full: bool,
) -> AsIs | ModelExport:
    """The artifact to stream as it is, or the export row of the variant a worker builds."""
    directory = storage.path(model.storage_path)
    manifest = _read_json(directory / MANIFEST_NAME, "model's manifest")
    kind = str(manifest.get("kind"))
    if kind == "lora" and merge_lora:
        return request_build(session, model, "merged", storage=storage)
    if kind == "head" and as_full:
        check_head_as_full(manifest, directory, settings)
        return request_build(session, model, "full", storage=storage)
    return AsIs(directory, archive_filename(model.id, kind))


def _find(session: Session, model_id: str, variant: str) -> ModelExport | None:
    stmt = select(ModelExport).where(
        ModelExport.model_id == model_id, ModelExport.variant == variant
    )
    return session.scalar(stmt)


def request_build(session: Session, model: Model, variant: str, *, storage: Storage) -> ModelExport:
    """The export row of ``variant``: created (and sent after the commit) when new, else
    repaired if it needs to be (``export_lifecycle.revive``) and re-read."""
    row = _find(session, model.id, variant)
    if row is None:
        row = ModelExport(model_id=model.id, variant=variant, status="queued", attempt=0)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:  # a concurrent request created it first
            after_failed_savepoint(session)
            found = _find(session, model.id, variant)
            if found is None:
                raise
            return found
        enqueue_after_commit(session, EXPORT_TASK, [row.id])
        return row
    if revive(session, row, storage=storage):
        session.refresh(row)
    return row


def failure(row: ModelExport) -> AppError:
    """The error a failed export answers: the row's, with its status (409 or 422)."""
    error = row.error or {}
    status = 422 if error.get("status") == 422 else 409
    exc = AppError(
        str(error.get("message") or "The export failed."),
        code=str(error.get("code") or "export_failed"),
        details={"export_id": row.id, "variant": row.variant, "attempt": row.attempt},
    )
    exc.status_code = status
    return exc


def delete_exports(session: Session, *, model_id: str) -> None:
    """Forget a deleted model's exports (its archives go with its files)."""
    session.execute(delete(ModelExport).where(ModelExport.model_id == model_id))
