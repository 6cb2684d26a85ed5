"""Every error in the one JSON shape with the right status; predict's limits; Redis down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.conftest import API_REDIS_DB, csv_bytes, sample_rows, upload
from tests.api.test_auth_tenants import insert_model
from tests.api.test_hostile_uploads import assert_error
from tests.conftest import reset_caches


def test_unknown_route(client: TestClient, auth: dict[str, str]) -> None:
    for path in ("/nope", "/v1/nope", "/v2/datasets", "/v1/datasets/x/y/z"):
        assert_error(client.get(path, headers=auth), 404, "not_found")


def test_wrong_method(client: TestClient, auth: dict[str, str]) -> None:
    for method, path in (
        ("PUT", "/v1/datasets"),
        ("PATCH", "/v1/jobs/job_x"),
        ("DELETE", "/v1/jobs/job_x"),
        ("GET", "/v1/jobs/job_x/cancel"),
        ("GET", "/v1/models/m/predict"),
        ("POST", "/healthz"),
    ):
        r = client.request(method, path, headers=auth)
        assert_error(r, 405, "method_not_allowed")
        assert "allow" in {k.lower() for k in r.headers}


def test_malformed_json(client: TestClient, auth: dict[str, str]) -> None:
    headers = {**auth, "Content-Type": "application/json"}
    for content in (b"{not json", b"", b"[1, 2]", b'"a string"', b"\xff\xfe"):
        r = client.post("/v1/jobs", headers=headers, content=content)
        assert_error(r, 422, "invalid_input")
    model_id = insert_model("acme")
    r = client.post(f"/v1/models/{model_id}/predict", headers=headers, content=b'{"inputs": [')
    assert_error(r, 422, "invalid_input")


def test_bad_query_parameters(client: TestClient, auth: dict[str, str]) -> None:
    for path, params in (
        ("/v1/jobs", {"limit": "lots"}),
        ("/v1/jobs/job_x/events", {"after": "soon"}),
        ("/v1/models", {"limit": -1}),
        ("/v1/jobs", {"cursor": "%%%"}),
    ):
        assert_error(client.get(path, headers=auth, params=params), 422)


def test_predict_unknown_model(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post("/v1/models/mdl_nope/predict", headers=auth, json={"inputs": ["hi"]})
    assert_error(r, 404, "not_found")


def test_predict_too_many_inputs(client: TestClient, auth: dict[str, str]) -> None:
    model_id = insert_model("acme")
    r = client.post(f"/v1/models/{model_id}/predict", headers=auth, json={"inputs": ["x"] * 257})
    err = assert_error(r, 413, "too_many_inputs")
    assert err["details"]["max_inputs"] == 256


def test_predict_input_checks(client: TestClient, auth: dict[str, str]) -> None:
    model_id = insert_model("acme")
    for body in (
        {"inputs": []},
        {"inputs": "not a list"},
        {"inputs": ["a"], "top_k": 0},
        {"inputs": ["a"], "extra": 1},
        {"inputs": [["a pair", "for a single-text model"]]},
        {"inputs": ["x" * 100_001]},
        {"inputs": [3]},
    ):
        r = client.post(f"/v1/models/{model_id}/predict", headers=auth, json=body)
        assert_error(r, 422, "invalid_input")


def test_predict_times_out_without_a_worker(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("TUNESERVE_PREDICT_TIMEOUT_S", "0.5")
    get_settings.cache_clear()
    from app.db import session_scope
    from app.inference.protocol import TENANTS_KEY, WAKE_KEY, queue_key
    from app.models.orm import Model

    model_id = insert_model("acme")
    with session_scope() as s:
        tenant_id = s.get(Model, model_id).tenant_id  # type: ignore[union-attr]
    r = client.post(f"/v1/models/{model_id}/predict", headers=auth, json={"inputs": ["hi"]})
    err = assert_error(r, 504, "timeout")
    assert err["details"]["timeout_seconds"] == 0.5
    # the request went to the tenant's queue and woke the workers; at its deadline the API
    # took it back, so no worker computes it later
    queue = redis.Redis.from_url(f"{redis_url}/{API_REDIS_DB}")
    assert queue.sismember(TENANTS_KEY, tenant_id) and queue.exists(WAKE_KEY)
    assert queue.llen(queue_key(tenant_id)) == 0


def test_redis_down(down_client: TestClient, make_key: Callable[[str], dict[str, str]]) -> None:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.jobs.orm import Job, JobEvent

    auth = make_key("acme")
    ds = upload(down_client, auth, csv_bytes(sample_rows()))
    assert ds.status_code == 201, ds.text  # uploads do not need the queue
    body = {
        "base_model": "all-MiniLM-L6-v2",
        "dataset_id": ds.json()["id"],
        "strategy": {"name": "full"},
    }
    r = down_client.post("/v1/jobs", headers={**auth, "Idempotency-Key": "k"}, json=body)
    assert_error(r, 503, "queue_unavailable")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
        assert s.scalar(select(func.count()).select_from(JobEvent)) == 0
    assert down_client.get("/v1/jobs", headers=auth).json()["data"] == []

    # validation still comes first: a bad request is a 422, not a 503
    r = down_client.post("/v1/jobs", headers=auth, json={**body, "base_model": "nope"})
    assert_error(r, 422, "invalid_input")

    r = down_client.get("/readyz")
    assert r.status_code == 503, r.text
    assert r.json()["status"] == "unavailable"
    assert r.json()["checks"] == {"database": "ok", "queue": "unavailable"}
    assert down_client.get("/healthz").status_code == 200


def test_redis_down_predict(
    down_client: TestClient, make_key: Callable[[str], dict[str, str]]
) -> None:
    auth = make_key("acme")
    model_id = insert_model("acme")
    r = down_client.post(f"/v1/models/{model_id}/predict", headers=auth, json={"inputs": ["hi"]})
    assert_error(r, 503, "queue_unavailable")


def test_readyz_database_down(api_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.main import create_app

    monkeypatch.setenv(
        "TUNESERVE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    )
    reset_caches()
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        r = c.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["checks"]["database"].startswith("unavailable")
        assert r.json()["checks"]["queue"] == "ok"
        # a request that needs the database: 503 in the error shape, not 500
        r = c.get("/v1/datasets", headers={"Authorization": "Bearer ts_whatever"})
        assert_error(r, 503, "database_unavailable")


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_hostile_values_are_4xx_never_5xx(
    client: TestClient, auth: dict[str, str], api_env: Path
) -> None:
    """NUL characters (PostgreSQL text cannot hold them), numbers past BIGINT, deep cursors."""
    from tests.api.test_datasets import stored_files

    ds = upload(client, auth, csv_bytes(sample_rows())).json()
    job = client.post(
        "/v1/jobs",
        headers=auth,
        json={
            "base_model": "all-MiniLM-L6-v2",
            "dataset_id": ds["id"],
            "strategy": {"name": "full"},
        },
    ).json()
    events = f"/v1/jobs/{job['id']}/events"
    body = {"base_model": "all-MiniLM-L6-v2", "strategy": {"name": "full"}}
    cases = [
        ("GET", "/v1/datasets/%00", {}, None),
        ("GET", "/v1/datasets/a%00b/preview", {}, None),
        ("DELETE", "/v1/datasets/a%00b", {}, None),
        ("GET", "/v1/jobs/job%00", {}, None),
        ("POST", "/v1/jobs/job%00/cancel", {}, None),
        ("GET", "/v1/models/m%00", {}, None),
        ("POST", "/v1/models/m%00/predict", {"json": {"inputs": ["a"]}}, None),
        ("GET", "/v1/jobs", {"params": {"status": "queued\x00"}}, 422),
        ("GET", "/v1/jobs", {"params": {"status": "finished"}}, 422),
        (
            "GET",
            "/v1/jobs",
            {"params": {"cursor": _b64(b'["2024-01-01T00:00:00", "\\u0000"]')}},
            None,
        ),
        ("GET", "/v1/datasets", {"params": {"cursor": _b64(b"[" * 3000)}}, 422),
        ("GET", "/v1/jobs", {"params": {"cursor": _b64(b'["99999-01-01", "x"]')}}, 422),
        ("GET", "/v1/models", {"params": {"cursor": _b64(b'{"a": 1}')}}, 422),
        ("GET", events, {"params": {"after": str(10**30)}}, 422),
        ("GET", events, {"params": {"after": str(2**63)}}, 422),
        ("GET", events, {"params": {"after": "-1"}}, 422),
        ("POST", "/v1/jobs", {"json": {**body, "dataset_id": "ds\x00"}}, None),
        (
            "POST",
            "/v1/jobs",
            {"json": {**body, "dataset_id": ds["id"], "validation_dataset_id": "\x00"}},
            None,
        ),
    ]
    for method, path, kwargs, status in cases:
        r = client.request(method, path, headers=auth, **kwargs)
        assert r.status_code < 500, (method, path, kwargs, r.status_code, r.text)
        if status is not None:
            assert r.status_code == status, (method, path, kwargs, r.text)
        if r.status_code >= 400:
            assert_error(r, r.status_code)

    # a NUL in the dataset's name is dropped (the name is metadata), and no stray files remain
    r = upload(client, auth, csv_bytes(sample_rows()), name="evil\x00name\x1b[31m")
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "evilname[31m"
    ids = {d["id"] for d in client.get("/v1/datasets", headers=auth).json()["data"]}
    assert sorted(stored_files(api_env)) == sorted(f"datasets/{i}/data.parquet" for i in ids)


def test_predict_remembers_a_model_only_until_it_is_deleted(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("TUNESERVE_PREDICT_TIMEOUT_S", "0.2")
    get_settings.cache_clear()
    model_id = insert_model("acme")
    url = f"/v1/models/{model_id}/predict"
    assert_error(client.post(url, headers=auth, json={"inputs": ["hi"]}), 504, "timeout")
    assert client.delete(f"/v1/models/{model_id}", headers=auth).status_code == 204
    assert_error(client.post(url, headers=auth, json={"inputs": ["hi"]}), 404, "not_found")


def test_predict_with_a_revoked_key_and_no_memory(
    client: TestClient, make_key: Callable[[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from app.config import get_settings
    from app.db import session_scope
    from app.models.router import target_cache
    from app.tenants.orm import ApiKey
    from app.tenants.service import hash_key, revoke_key

    monkeypatch.setenv("TUNESERVE_PREDICT_TIMEOUT_S", "0.2")
    monkeypatch.setenv("TUNESERVE_AUTH_CACHE_S", "0")
    get_settings.cache_clear()
    target_cache.cache_clear()
    headers = make_key("acme")
    model_id = insert_model("acme")
    url = f"/v1/models/{model_id}/predict"
    assert_error(client.post(url, headers=headers, json={"inputs": ["hi"]}), 504, "timeout")
    with session_scope() as s:
        plain = headers["Authorization"].split(" ", 1)[1]
        key_id = s.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(plain)))
        assert key_id is not None and revoke_key(s, key_id=key_id)
    client.app.state.principals.clear()  # as the key cache's time (TUNESERVE_AUTH_CACHE_S) later
    assert_error(client.post(url, headers=headers, json={"inputs": ["hi"]}), 401, "unauthorized")


def test_predict_refuses_text_that_is_not_unicode(client: TestClient, auth: dict[str, str]) -> None:
    model_id = insert_model("acme")
    headers = {**auth, "Content-Type": "application/json"}
    body = b'{"inputs": ["fine", "lone \\ud800 surrogate"]}'  # valid JSON, not valid Unicode
    r = client.post(f"/v1/models/{model_id}/predict", headers=headers, content=body)
    err = assert_error(r, 422, "invalid_input")  # refused before the route parses it
    assert err["details"] == {"path": "body.inputs.1"}
