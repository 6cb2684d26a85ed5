"""The OpenAPI document says what the service does, and its docs pages work offline.

Before: no security scheme (no Authorize button), no request body on the upload, FastAPI's
``{detail}`` as the 422 schema, no 401/403/404/409/413/415/429/503/504 anywhere, and /docs and
/redoc loading Swagger UI and ReDoc from a CDN.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from app.datasets.service import TASKS
from app.openapi import BEARER
from app.openapi_tables import EXTRA_STATUSES, UPLOAD_EXAMPLE
from tests.api.conftest import CLOSED_BROKER
from tests.conftest import configure, reset_caches

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture
def doc_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app, for its document and pages (no database is touched)."""
    from app.main import create_app

    db_url = f"sqlite:///{tmp_path / 'unused.db'}"
    configure(monkeypatch, db_url=db_url, data_dir=tmp_path / "data", broker_url=CLOSED_BROKER)
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client
    reset_caches()


@pytest.fixture
def document(doc_client: TestClient) -> dict[str, Any]:
    response = doc_client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(document: dict[str, Any]) -> list[Operation]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def v1(document: dict[str, Any]) -> list[Operation]:
    return [op for op in operations(document) if op[1].startswith("/v1/")]


def test_every_v1_operation_needs_the_bearer_key(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"][BEARER]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert len(v1(document)) >= 25
    for method, path, operation in v1(document):
        assert operation.get("security") == [{BEARER: []}], (method, path)
        names = [p["name"].lower() for p in operation.get("parameters", [])]
        assert "authorization" not in names, (method, path)
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_every_error_response_has_the_one_error_shape(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or (path, status) == ("/readyz", "503"):
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_the_error_schema_accepts_what_the_service_answers(
    client: TestClient, auth: dict[str, str]
) -> None:
    document = client.get("/openapi.json").json()
    validator = jsonschema_rs.validator_for(document["components"]["schemas"]["Error"])
    answers = {
        401: client.get("/v1/jobs"),  # no key
        404: client.get("/v1/jobs/job_nope", headers=auth),
        415: client.post("/v1/datasets", headers=auth, content=b"x"),
        422: client.get("/v1/jobs", params={"limit": "many"}, headers=auth),
    }
    for status, response in answers.items():
        assert response.status_code == status, response.text
        assert validator.is_valid(response.json()), response.json()
        path = "/v1/jobs/{job_id}" if status == 404 else "/v1/jobs"
        method = "post" if status == 415 else "get"
        if status == 415:
            path = "/v1/datasets"
        assert str(status) in document["paths"][path][method]["responses"]
    assert answers[401].headers["WWW-Authenticate"].startswith("Bearer")
    assert not validator.is_valid({"detail": [{"loc": ["query", "limit"], "msg": "bad"}]})


def test_each_route_documents_its_statuses(document: dict[str, Any]) -> None:
    for method, path, operation in v1(document):
        statuses = {int(s) for s in operation["responses"]}
        assert {401, 403, 429, 503} <= statuses, (method, path)
        if "{" in path:
            assert 404 in statuses, (method, path)
        if "requestBody" in operation:
            assert {413, 422} <= statuses, (method, path)
        assert set(EXTRA_STATUSES.get((method, path), ())) <= statuses, (method, path)
        assert 500 not in statuses
    paths = document["paths"]
    assert "504" in paths["/v1/models/{model_id}/predict"]["post"]["responses"]
    assert {"413", "415", "422"} <= set(paths["/v1/datasets"]["post"]["responses"])
    assert "409" in paths["/v1/jobs/{job_id}/cancel"]["post"]["responses"]
    assert {"200", "201", "409"} <= set(paths["/v1/jobs"]["post"]["responses"])
    assert "Retry-After" in paths["/v1/jobs"]["get"]["responses"]["429"]["headers"]


def test_parameters_are_never_null(document: dict[str, Any]) -> None:
    """A URL or a header cannot carry JSON null: ``?after=null`` is a 422, so an optional
    parameter is documented as its plain type (FastAPI writes ``anyOf [X, null]``)."""
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            assert "null" not in str(parameter["schema"]), (method, path, parameter["name"])
    events = document["paths"]["/v1/jobs/{job_id}/events"]["get"]["parameters"]
    after = next(p for p in events if p["name"] == "after")
    assert after["schema"]["type"] == "integer" and after["schema"]["minimum"] == 0


def test_the_upload_documents_its_multipart_form(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/datasets"]["post"]["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]
    schema = document["components"]["schemas"]["DatasetUpload"]
    assert form["schema"] == {"$ref": "#/components/schemas/DatasetUpload"}
    assert schema["required"] == ["file"]
    assert schema["properties"]["file"] == {**schema["properties"]["file"], "format": "binary"}
    assert schema["properties"]["task"]["enum"] == list(TASKS)
    fields = {"file", "task", "name", "text_column", "label_column", "text_pair_column", "format"}
    fields.add("image_column")  # the image tasks' labels-file layout
    assert set(schema["properties"]) == fields
    assert form["example"] == UPLOAD_EXAMPLE


def test_the_documented_upload_example_is_accepted(
    client: TestClient, auth: dict[str, str]
) -> None:
    fields = {k: v for k, v in UPLOAD_EXAMPLE.items() if k != "file"}
    response = client.post(
        "/v1/datasets",
        headers=auth,
        files={"file": ("upload", UPLOAD_EXAMPLE["file"].encode(), "application/octet-stream")},
        data=fields,
    )
    assert response.status_code == 201, response.text
    assert response.json()["num_rows"] == 10


def test_links_lead_to_real_operations(document: dict[str, Any]) -> None:
    by_id = {op["operationId"]: (method, path, op) for method, path, op in operations(document)}
    count = 0
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            for name, link in response.get("links", {}).items():
                count += 1
                assert link["operationId"] in by_id, (method, path, status, name)
                _, target_path, target = by_id[link["operationId"]]
                for parameter in link["parameters"]:
                    assert "{" + parameter + "}" in target_path, (name, parameter)
                for field in link.get("requestBody", {}):
                    ref = target["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                    model = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
                    assert field in model["properties"], (name, field)
    assert count >= 15
    created = document["paths"]["/v1/jobs"]["post"]["responses"]["201"]["links"]
    assert {"GetJob", "CancelJob", "JobEvents"} <= set(created)


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_elsewhere(doc_client: TestClient, page: str) -> None:
    response = doc_client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert "<script>" not in html  # no inline script: the strict policy forbids it
    assets = _assets(html)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        served = doc_client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 100, asset
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    if page == "/docs":
        assert policy["style-src"] == "'self'"
    assert "swagger-ui-bundle.js" in html or "redoc.standalone.js" in html


def test_swagger_starts_from_the_served_document(doc_client: TestClient) -> None:
    html = doc_client.get("/docs").text
    assert 'data-openapi-url="/openapi.json"' in html
    init = doc_client.get("/docs/swagger-init.js")
    assert init.headers["content-type"].startswith("text/javascript")
    assert "persistAuthorization: false" in init.text  # the key is not kept in the browser
    assert "validatorUrl: null" in init.text  # no call to an online validator
