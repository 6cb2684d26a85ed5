"""The OpenAPI document, made to say what the service really does.

FastAPI's generated document is taken as it is and corrected in one pass, rather than in every
route decorator:

- a bearer security scheme (``Authorization: Bearer <key>``) on every ``/v1`` operation, so
  Swagger UI shows *Authorize*; authentication happens in a middleware that FastAPI cannot see;
- the multipart form of ``POST /v1/datasets``, which the route parses from the stream itself
  (:mod:`app.datasets.upload`), so FastAPI never sees it; likewise the two bodies of predict
  (JSON, or a multipart form of image files: :mod:`app.models.predict_body`);
- one error schema, ``{"error": {"code", "message", "details"}}`` (:mod:`app.errors`), for
  every error response, in place of FastAPI's ``HTTPValidationError`` for 422;
- every status a route can answer: from rules (an authenticated route can answer 401, 403,
  429 and 503; one with a path id 404; one with a body 413 and 422) plus a small table of the
  statuses particular to a route (:mod:`app.openapi_tables`);
- OpenAPI links from each creating operation to the operations on what it created, so a
  client (and the schemathesis run in the tests) can follow them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.models.schemas import PredictRequest
from app.openapi_tables import (
    AUTHENTICATED_STATUSES,
    BODY_STATUSES,
    ERROR,
    ERROR_DESCRIPTIONS,
    ERROR_HEADERS,
    ERROR_SCHEMA,
    EXTRA_STATUSES,
    LINKS,
    PATH_ID_STATUSES,
    PREDICT_FORM,
    READINESS_SCHEMA,
    REPLAY_STATUSES,
    UPLOAD_EXAMPLE,
    UPLOAD_FORM,
)

BEARER = "bearerAuth"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS.get(status, "An error."),
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}},
    }
    if status in ERROR_HEADERS:
        response["headers"] = copy.deepcopy(ERROR_HEADERS[status])
    return response


def _statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    statuses = set(EXTRA_STATUSES.get((method, path), ()))
    if path.startswith("/v1/"):
        statuses.update(AUTHENTICATED_STATUSES)
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        statuses.update(PATH_ID_STATUSES)
    if "requestBody" in operation:
        statuses.update(BODY_STATUSES)
    if any(p.get("in") in ("query", "header") for p in parameters):
        statuses.add(422)
    return statuses


def _document_errors(path: str, method: str, operation: dict[str, Any]) -> None:
    """Every error status of the operation, in the one error shape; a description the route
    gave is kept, FastAPI's generic one replaced."""
    responses = operation.setdefault("responses", {})
    statuses = _statuses(path, method, operation) | {
        int(s) for s in responses if s.isdigit() and int(s) >= 400
    }
    for status in sorted(statuses):
        if (method, path) == ("get", "/readyz") and status == 503:
            continue  # readiness answers in its own shape (_document_readiness)
        described = responses.get(str(status), {}).get("description")
        response = _error_response(status)
        if described and described != "Validation Error":
            response["description"] = described
        responses[str(status)] = response


def _without_null(parameter: dict[str, Any]) -> None:
    """An optional query or header parameter is absent or a value: a client cannot send
    JSON's ``null`` in a URL or a header (FastAPI documents ``X | None`` as ``anyOf [X, null]``,
    and ``?after=null`` is a 422)."""
    schema = parameter.get("schema", {})
    options = schema.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return
    rest = [option for option in options if option != {"type": "null"}]
    kept = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    parameter["schema"] = {**kept, **rest[0]} if len(rest) == 1 else {**kept, "anyOf": rest}


def _document_upload(schema: dict[str, Any]) -> None:
    operation = schema["paths"].get("/v1/datasets", {}).get("post")
    if operation is None:
        return
    operation["requestBody"] = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/DatasetUpload"},
                "encoding": {"file": {"contentType": "application/octet-stream"}},
                "example": dict(UPLOAD_EXAMPLE),
            }
        },
    }
    schema["components"]["schemas"]["DatasetUpload"] = copy.deepcopy(UPLOAD_FORM)


def _document_predict(schema: dict[str, Any]) -> None:
    operation = schema["paths"].get("/v1/models/{model_id}/predict", {}).get("post")
    if operation is None:
        return
    operation["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/PredictImages"},
                "encoding": {"files": {"contentType": "image/png, image/jpeg, image/*"}},
            },
        },
    }
    schemas = schema["components"]["schemas"]
    schemas["PredictRequest"] = PredictRequest.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas["PredictImages"] = copy.deepcopy(PREDICT_FORM)


def _document_readiness(schema: dict[str, Any]) -> None:
    operation = schema["paths"].get("/readyz", {}).get("get")
    if operation is None:
        return
    schema["components"]["schemas"]["Readiness"] = copy.deepcopy(READINESS_SCHEMA)
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}
    operation["responses"]["200"] = {"description": "Every dependency answers.", "content": content}
    operation["responses"]["503"] = {
        "description": "A dependency (the database or the queue) does not answer.",
        "content": copy.deepcopy(content),
    }


def _document_replays(schema: dict[str, Any]) -> None:
    for (method, path), (created, replayed) in REPLAY_STATUSES.items():
        operation = schema["paths"].get(path, {}).get(method)
        if operation is None or created not in operation["responses"]:
            continue
        response = copy.deepcopy(operation["responses"][created])
        response["description"] = "The same `Idempotency-Key` and body again: the first answer."
        operation["responses"][replayed] = response


def _add_links(schema: dict[str, Any]) -> None:
    ids = {(method, path): op.get("operationId") for path, method, op in _operations(schema)}
    for (method, path, status), links in LINKS.items():
        operation = schema["paths"].get(path, {}).get(method)
        if operation is None or status not in operation["responses"]:
            continue
        out = operation["responses"][status].setdefault("links", {})
        for link in links:
            target = ids.get((link.method, link.path))
            if target is None:
                continue
            out[link.name] = {"operationId": target, "parameters": dict(link.parameters)}
            if link.body is not None:
                out[link.name]["requestBody"] = dict(link.body)


def _drop_unused_schemas(schema: dict[str, Any]) -> None:
    """FastAPI's validation error schemas, once nothing refers to them."""
    fastapi_own = ("HTTPValidationError", "ValidationError")
    schemas = schema["components"]["schemas"]
    rest = {k: v for k, v in schemas.items() if k not in fastapi_own}
    text = json.dumps({**schema, "components": {**schema["components"], "schemas": rest}})
    for name in fastapi_own:
        if f'"#/components/schemas/{name}"' not in text:
            schemas.pop(name, None)


def make_honest(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document, corrected (in place) as this module's docstring says."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR] = copy.deepcopy(ERROR_SCHEMA)
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`tuneserve keys create`), sent as "
        "`Authorization: Bearer <key>`. Its scopes decide what it may do.",
    }
    _document_upload(schema)
    _document_predict(schema)
    _document_readiness(schema)
    _document_replays(schema)
    for path, method, operation in _operations(schema):
        if path.startswith("/v1/"):
            operation["security"] = [{BEARER: []}]
            operation["parameters"] = [
                p
                for p in operation.get("parameters", [])
                if not (p.get("in") == "header" and p.get("name", "").lower() == "authorization")
            ]
            if not operation["parameters"]:
                del operation["parameters"]
        for parameter in operation.get("parameters", []):
            _without_null(parameter)
        _document_errors(path, method, operation)
    _add_links(schema)
    _drop_unused_schemas(schema)
    return schema


def install_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Make ``app.openapi`` (and so ``/openapi.json`` and the docs pages) serve the honest
    document, built once on first use."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = make_honest(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                    servers=app.servers,
                    separate_input_output_schemas=app.separate_input_output_schemas,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
