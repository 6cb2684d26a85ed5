"""A predict request's body, read by its content type: JSON (texts, or base64 images) or a
multipart form of image files.

The route parses the body itself (FastAPI reads one content type per route): JSON goes through
:class:`~app.models.schemas.PredictRequest` exactly as a declared body would (the same 422
shape), a multipart form through :func:`_read_form`. Either way the result is a
:class:`PredictBody`; :mod:`app.models.image_inputs` checks the images in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from app.config import Settings
from app.errors import InvalidInput, UnsupportedMediaType
from app.models.image_inputs import check_image, decode_base64, too_many_images
from app.models.schemas import PredictRequest

#: the multipart form's fields
FILES_FIELD = "files"
TOP_K_FIELD = "top_k"


@dataclass(frozen=True)
class PredictBody:
    """Texts (``images`` False) or images as checked base64 text (``images`` True)."""

    inputs: list[Any]
    top_k: int
    images: bool


async def read_predict_body(request: Request, settings: Settings) -> PredictBody:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _read_form(request, settings)
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"Predict takes application/json (texts, or images as base64) or "
            f"multipart/form-data (image files in `{FILES_FIELD}`), not {media!r}.",
            details={"content_type": media},
        )
    raw = await request.body()
    try:
        body = PredictRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None
    if body.images is None:
        return PredictBody(list(body.inputs or []), body.top_k, images=False)
    if len(body.images) > settings.predict_max_images:
        raise too_many_images(len(body.images), settings)
    checked = []
    for i, text in enumerate(body.images):
        field = f"images[{i}]"
        data = decode_base64(text, field=field, settings=settings)
        checked.append(check_image(data, field=field, settings=settings))
    return PredictBody(checked, body.top_k, images=True)


async def _read_form(request: Request, settings: Settings) -> PredictBody:
    try:
        form = await request.form(max_files=settings.predict_max_images + 1, max_fields=8)
    except HTTPException as exc:
        if "too many files" in str(exc.detail).lower():
            raise too_many_images(settings.predict_max_images + 1, settings) from None
        raise InvalidInput(
            f"The multipart body cannot be read: {exc.detail}", code="invalid_multipart"
        ) from None
    try:
        unknown = sorted(set(form.keys()) - {FILES_FIELD, TOP_K_FIELD})
        if unknown:
            raise InvalidInput(
                f"Unknown form field {unknown[0]!r}: predict takes image files in "
                f"`{FILES_FIELD}` and an optional `{TOP_K_FIELD}`.",
                details={"field": unknown[0]},
            )
        files = form.getlist(FILES_FIELD)
        if not files:
            raise InvalidInput(
                f"No image files: send one or more in the form field `{FILES_FIELD}`.",
                details={"field": FILES_FIELD},
            )
        if len(files) > settings.predict_max_images:
            raise too_many_images(len(files), settings)
        checked = []
        for i, part in enumerate(files):
            field = f"{FILES_FIELD}[{i}]"
            if not isinstance(part, UploadFile):
                raise InvalidInput(f"{field} is not a file.", details={"field": field})
            data = await part.read(settings.predict_max_image_bytes + 1)
            checked.append(check_image(data, field=field, settings=settings))
        return PredictBody(checked, _top_k(form.getlist(TOP_K_FIELD)), images=True)
    finally:
        await form.close()


def _top_k(values: list[Any]) -> int:
    if not values:
        return 1
    value = values[-1]
    if isinstance(value, str) and value.strip().isdigit() and 1 <= int(value) <= 1000:
        return int(value)
    raise InvalidInput(
        f"`{TOP_K_FIELD}` must be a whole number from 1 to 1000.", details={"field": TOP_K_FIELD}
    )
