"""Render every error, FastAPI's own included, in the one JSON shape."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import AppError
from app.route_table import allowed_methods
from app.validation_messages import describe

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}


_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(exc: AppError) -> JSONResponse:
    """The one JSON shape for ``exc``, with its headers (``Retry-After``, ``WWW-Authenticate``).
    Used by the exception handler and by the middleware that answers before a route runs."""
    return JSONResponse(
        jsonable_encoder(exc.to_body()), status_code=exc.status_code, headers=exc.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        message = describe(exc.errors(), getattr(exc, "body", None))
        return JSONResponse(
            jsonable_encoder(_body("invalid_input", message, errors)),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body json cannot parse (nested past the recursion limit):
            # the body is invalid input like any other malformed JSON
            return JSONResponse(
                _body("invalid_input", "The request body is not JSON this service can read."),
                status_code=422,
            )
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
        return JSONResponse(_body(code, message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(OperationalError)
    async def db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database error: %s", exc)
        return JSONResponse(
            _body("database_unavailable", "The database is unavailable; try again shortly."),
            status_code=503,
        )

    @app.exception_handler(DataError)
    async def bad_value(_: Request, exc: DataError) -> JSONResponse:
        # a value the database cannot hold, e.g. a NUL character in an id (PostgreSQL)
        log.info("database rejected a value: %s", exc.orig)
        return JSONResponse(
            _body(
                "invalid_input",
                "A value in the request cannot be used (for example it holds a NUL character).",
            ),
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(_body("internal", "Internal server error."), status_code=500)
